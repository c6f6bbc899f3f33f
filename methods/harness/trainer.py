"""One training loop for every method.

Exact resume: the learning rate is a function of the step, each step reseeds torch from
(seed, rank, step), data order and method noise are functions of (seed, step), and a checkpoint holds
everything else (weights, AdamW moments, EMAs, method state). Re-running after a kill continues from
the last checkpoint and ends bitwise equal to an uninterrupted run on CPU.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from methods.base import Batch, Method
from methods.noise import mix_seed
from methods.harness import checkpoint
from methods.harness.dist import DistEnv, all_true
from methods.harness.ema import EMASet
from methods.harness.optim import SCHEDULES, build_optimizer, lr_at


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 2048               # global, over all processes
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 0
    schedule: str = "constant"           # constant | cosine
    min_lr: float = 0.0                  # cosine floor
    grad_clip: float = 0.0               # global-norm clip; 0 disables
    ema: list[float] = field(default_factory=lambda: [0.99, 0.999])
    precision: str = "auto"              # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    ckpt_every_steps: int = 500
    ckpt_every_minutes: float = 10.0
    log_every: int = 50
    progress: bool = True
    eval_every: int = 0                  # images between quality checks during training (0: off; bench/train_quality.py)
    eval_samples: int = 500              # samples per check
    collapse_below: float = 0.5          # warn below this fraction of the modes a perfect sampler covers

    def validate(self, world: int = 1) -> None:
        checks = [
            (self.steps >= 1, f"train.steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1 and self.batch_size % world == 0,
             f"train.batch_size={self.batch_size} must be >= 1 and divisible by the {world} processes"),
            (self.lr > 0, f"train.lr must be > 0, got {self.lr}"),
            (self.schedule in SCHEDULES, f"train.schedule must be one of {list(SCHEDULES)}, got '{self.schedule}'"),
            (self.precision in ("auto", "fp32", "bf16"),
             f"train.precision must be auto, fp32 or bf16, got '{self.precision}'"),
            (0 <= self.warmup_steps, f"train.warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.ckpt_every_steps >= 1, f"train.ckpt_every_steps must be >= 1, got {self.ckpt_every_steps}"),
            (self.log_every >= 1, f"train.log_every must be >= 1, got {self.log_every}"),
            (self.grad_clip >= 0, f"train.grad_clip must be >= 0 (0 disables), got {self.grad_clip}"),
            (self.eval_every >= 0 and self.eval_samples >= 1 and 0 <= self.collapse_below <= 1,
             f"train.eval_every must be >= 0 (0 disables), train.eval_samples >= 1 and train.collapse_below in "
             f"[0, 1], got {self.eval_every}, {self.eval_samples}, {self.collapse_below}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


class BatchSource(Protocol):
    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch: ...


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient: ``what`` it was, the ``step`` it happened at, and the last good
    checkpoint (``checkpoint_step`` None when none was written yet)."""

    def __init__(self, message: str, what: str, step: int, checkpoint_step: int | None, checkpoint_path: Path):
        super().__init__(message)
        self.what, self.step, self.checkpoint_step, self.checkpoint_path = what, step, checkpoint_step, checkpoint_path


Hook = Callable[["Trainer"], None]


@dataclass
class TrainSummary:
    status: str
    steps: int
    images_seen: int
    wall_seconds: float
    resumes: int
    images_per_second: float
    final_loss: float | None
    gpu_hours: float


class Trainer:
    def __init__(self, method: Method, net: nn.Module, data: BatchSource, cfg: TrainConfig, run_dir: Path,
                 seed: int, env: DistEnv, log: Callable[[str], None] = print, hooks: tuple[Hook, ...] = ()):
        """``hooks`` run after every step (and its checkpoint), in order, on every rank: e.g. an evaluation
        during training or a preemption check. A hook that sets ``trainer.stop_reason`` ends ``fit`` after
        a checkpoint, with the run left ``partial``."""
        cfg.validate(env.world)
        self.method, self.data, self.cfg, self.seed, self.env, self.log = method, data, cfg, seed, env, log
        self.hooks, self.stop_reason = tuple(hooks), None
        self.run_dir = Path(run_dir)
        self.ckpt_path = self.run_dir / "checkpoints" / checkpoint.LAST
        self.log_path = self.run_dir / "train_log.jsonl"
        self.net = net.to(env.device)
        self.opt = build_optimizer(self.net, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
        self.ema = EMASet(self.net, cfg.ema)
        self.local_batch = cfg.batch_size // env.world
        self.step, self.images, self.wall, self.resumes = 0, 0, 0.0, 0

    # -- state ----------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "images_seen": self.images, "wall_seconds": self.wall,
                "resumes": self.resumes, "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "ema": self.ema.state_dict(), "method": self.method.state_dict(), "train": asdict(self.cfg)}

    def restore(self) -> bool:
        state = checkpoint.load(self.ckpt_path, self.env.device)
        if state is None:
            return False
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.ema.load_state_dict(state["ema"])
        self.method.load_state_dict(state["method"])
        self.step, self.images, self.wall = state["step"], state["images_seen"], state["wall_seconds"]
        self.resumes = state["resumes"] + (self.step < self.cfg.steps)
        return True

    def save(self) -> None:
        if self.env.is_main:
            checkpoint.save_atomic(self.state(), self.ckpt_path)

    def _truncate_log(self) -> None:
        """Drop log rows written after the checkpoint we resume from (they will be written again)."""
        if not (self.env.is_main and self.log_path.exists()):
            return
        rows = [r for r in self.log_path.read_text().splitlines() if r.strip()]
        kept = [r for r in rows if json.loads(r)["step"] <= self.step]
        self.log_path.write_text("".join(r + "\n" for r in kept))

    # -- loop -----------------------------------------------------------------------------------------
    def _autocast(self):
        dev, p = self.env.device.type, self.cfg.precision
        if p == "bf16" or (p == "auto" and dev == "cuda"):
            return torch.autocast(dev, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _train_net(self) -> nn.Module:
        if self.env.world == 1:
            return self.net
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.env.device.index] if self.env.device.type == "cuda" else None
        return DistributedDataParallel(self.net, device_ids=ids)

    def _diverged(self, what: str) -> TrainingDiverged:
        good = checkpoint.load(self.ckpt_path)["step"] if self.ckpt_path.exists() else None
        kept = (f"the last good checkpoint (step {good}) is kept at {self.ckpt_path}" if good is not None
                else "no checkpoint was written yet")
        return TrainingDiverged(f"training diverged: non-finite {what} at step {self.step}; {kept}; "
                                f"lower train.lr, raise train.warmup_steps or set train.grad_clip",
                                what, self.step, good, self.ckpt_path)

    def fit(self) -> TrainSummary:
        cfg = self.cfg
        resumed = self.restore()
        if resumed and self.step < cfg.steps:
            self.log(f"resuming from step {self.step} ({self.ckpt_path})")
        self._truncate_log()
        train_net = self._train_net()
        t_start, t_ckpt = time.monotonic(), time.monotonic()
        wall0, window = self.wall, _Window()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and self.env.is_main),
                   dynamic_ncols=True, mininterval=1.0)
        with self.log_path.open("a") if self.env.is_main else contextlib.nullcontext() as log_file:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                loss, diag, grad_norm = self._step(train_net)
                window.add(loss, diag, grad_norm, self.local_batch * self.env.world, time.perf_counter() - t0)
                self.step += 1
                self.images += cfg.batch_size
                self.wall = wall0 + time.monotonic() - t_start
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row = window.row(self.step, self.images, self._lr(self.step - 1), self.wall)
                    if log_file is not None:
                        log_file.write(json.dumps(row) + "\n")
                        log_file.flush()
                    bar.set_postfix(loss=f"{row['loss']:.4g}", img_s=f"{row['images_per_s']:.0f}")
                bar.update(1)
                due = (time.monotonic() - t_ckpt) / 60 >= cfg.ckpt_every_minutes
                if self.step % cfg.ckpt_every_steps == 0 or self.step == cfg.steps or due:
                    self.save()
                    t_ckpt = time.monotonic()
                for hook in self.hooks:
                    hook(self)
                if self.stop_reason is not None:
                    self.save()
                    self.log(f"stopping at step {self.step}: {self.stop_reason}")
                    break
        bar.close()
        return self.summary(window.last_loss)

    def _lr(self, step: int) -> float:
        c = self.cfg
        return lr_at(step, c.lr, c.steps, c.warmup_steps, c.schedule, c.min_lr)

    def _step(self, train_net: nn.Module) -> tuple[float, dict[str, float], float]:
        env, cfg = self.env, self.cfg
        torch.manual_seed(mix_seed(self.seed, env.rank, self.step))
        batch = self.data.batch(self.step, self.seed, env.rank, env.world, self.local_batch, env.device)
        for group in self.opt.param_groups:
            group["lr"] = self._lr(self.step)
        with self._autocast():
            loss, diag = self.method.loss(train_net, batch)
        if not all_true(bool(torch.isfinite(loss)), env):
            raise self._diverged("loss")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.net.parameters(), clip))
        if not math.isfinite(grad_norm):
            raise self._diverged("gradient norm")
        self.opt.step()
        self.ema.update(self.net)
        return float(loss.detach()), diag, grad_norm

    def summary(self, final_loss: float | None) -> TrainSummary:
        gpus = self.env.world if self.env.device.type == "cuda" else 0
        return TrainSummary(status="finished" if self.step >= self.cfg.steps else "partial", steps=self.step,
                            images_seen=self.images, wall_seconds=round(self.wall, 3), resumes=self.resumes,
                            images_per_second=round(self.images / self.wall, 2) if self.wall > 0 else 0.0,
                            final_loss=final_loss, gpu_hours=round(gpus * self.wall / 3600, 4))


class _Window:
    """Running means between two log rows."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n, self.images, self.seconds, self.last_loss = 0, 0, 0.0, None

    def add(self, loss: float, diag: dict[str, float], grad_norm: float, images: int, seconds: float) -> None:
        for k, v in {"loss": loss, "grad_norm": grad_norm, **diag}.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1
        self.images += images
        self.seconds += seconds
        self.last_loss = loss

    def row(self, step: int, images: int, lr: float, wall: float) -> dict:
        row = {"step": step, "images": images, "lr": lr, "wall_s": round(wall, 3),
               "images_per_s": self.images / self.seconds if self.seconds else 0.0}
        row.update({k: v / self.n for k, v in self.sums.items()})
        self.sums, self.n, self.images, self.seconds = {}, 0, 0, 0.0
        return row
