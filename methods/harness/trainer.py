"""One training loop for every method.

Exact resume: the learning rate is a function of the step, each step reseeds torch from
(seed, rank, step), data order and method noise are functions of (seed, step), and a checkpoint holds
everything else (weights, AdamW moments, EMAs, method state). Re-running after a kill continues from
the last checkpoint and ends bitwise equal to an uninterrupted run on CPU.

The step never waits for the device: losses, gradient norms and diagnostics stay on it
(``device_log.DeviceWindow``) and are read every ``train.log_every`` steps, before every checkpoint and
at the end. A non-finite loss or gradient is caught at the next read, named by the first bad step, and
no checkpoint is ever written after it. The fast-path switches (bf16, TF32, compile, fused AdamW,
channels-last features, gradient accumulation) are described in ``fast_path``.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from methods.base import Batch, Method
from methods.noise import mix_seed
from methods.harness import checkpoint, rank_state
from methods.harness.device_log import DeviceWindow
from methods.harness.dist import DistEnv, barrier, main_decides
from methods.harness.ema import EMASet
from methods.harness.fast_path import micro_batches, prepare_feature_modules, resolve, set_tf32
from methods.harness.optim import build_optimizer, lr_at, set_fused
from methods.harness.train_config import TrainConfig  # noqa: F401 (re-exported: the trainer's config)


class BatchSource(Protocol):
    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch: ...


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient: ``what`` it was, the ``step`` it happened at, and the last good
    checkpoint (``checkpoint_step`` None when none was written yet)."""

    def __init__(self, message: str, what: str, step: int, checkpoint_step: int | None, checkpoint_path: Path):
        super().__init__(message)
        self.what, self.step, self.checkpoint_step, self.checkpoint_path = what, step, checkpoint_step, checkpoint_path


class ResumeError(RuntimeError):
    """A checkpoint this run cannot continue from, in one line."""


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
    fast_path: dict = field(default_factory=dict)    # the resolved fast-path switches (fast_path.FastPath)
    lost_wall_seconds: float = 0.0       # training time redone after kills (checkpoint to last log row)


class Trainer:
    def __init__(self, method: Method, net: nn.Module, data: BatchSource, cfg: TrainConfig, run_dir: Path,
                 seed: int, env: DistEnv, log: Callable[[str], None] = print, hooks: tuple[Hook, ...] = ()):
        """``hooks`` run after every step (and its checkpoint), in order, on every rank: e.g. an evaluation
        during training or a preemption check. A hook that sets ``trainer.stop_reason`` ends ``fit`` after
        a checkpoint, with the run left ``partial``. A hook that needs finite weights (an evaluation)
        calls ``trainer.check_finite()`` first: the step itself does not look."""
        cfg.validate(env.world)
        self.method, self.data, self.cfg, self.seed, self.env, self.log = method, data, cfg, seed, env, log
        self.hooks, self.stop_reason = tuple(hooks), None
        self.run_dir = Path(run_dir)
        self.ckpt_path = self.run_dir / "checkpoints" / checkpoint.LAST
        self.log_path = self.run_dir / "train_log.jsonl"
        self.fast = resolve(env.device, cfg.precision, cfg.tf32, cfg.compile, cfg.fused_adamw, cfg.channels_last,
                            cfg.accum_steps, method, net)
        set_tf32(self.fast.tf32)
        self.net = net.to(env.device)
        self.opt = build_optimizer(self.net, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), self.fast.fused_adamw)
        self.ema = EMASet(self.net, cfg.ema)
        self.local_batch = cfg.batch_size // env.world
        self.window = DeviceWindow(env.device, env.world)
        self.step, self.images, self.wall, self.resumes, self.lost = 0, 0, 0.0, 0, 0.0

    # -- state ----------------------------------------------------------------------------------------
    def _state_per_process(self) -> bool:
        """Whether the processes hold different method state (then each rank saves its own, rank_state.py)."""
        return bool(getattr(self.method, "state_per_process", lambda world: False)(self.env.world))

    def state(self) -> dict:
        per = self._state_per_process()
        return {"step": self.step, "images_seen": self.images, "wall_seconds": self.wall,
                "resumes": self.resumes, "lost_wall_seconds": self.lost, "net": self.net.state_dict(),
                "opt": self.opt.state_dict(), "ema": self.ema.state_dict(),
                "method": None if per else self.method.state_dict(), "method_ranks": self.env.world if per else 0,
                "train": asdict(self.cfg)}

    def restore(self) -> bool:
        state = checkpoint.load(self.ckpt_path, self.env.device)
        if state is None:
            return False
        ranks = state.get("method_ranks", 0)
        if ranks and ranks != self.env.world:
            raise ResumeError(f"{self.ckpt_path} holds the method state of each of {ranks} processes (drifting "
                              f"queues with method.queue_fill=local); resume it with {ranks} processes")
        method_state = (rank_state.restore(self.ckpt_path.parent, self.env.rank, state["step"], self.env.device)
                        if ranks else state["method"])
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.ema.load_state_dict(state["ema"])
        self.method.load_state_dict(method_state)
        self.step, self.images, self.wall = state["step"], state["images_seen"], state["wall_seconds"]
        self.lost = state.get("lost_wall_seconds", 0.0)
        self.resumes = state["resumes"] + (self.step < self.cfg.steps)
        return True

    def save(self) -> None:
        """Every rank calls this at the same steps; per-process method state is written by each rank before
        rank 0 commits ``last.pt``."""
        per = self._state_per_process()
        if per:
            rank_state.save(self.ckpt_path.parent, self.env.rank, self.step, self.method.state_dict())
            barrier(self.env)
        if self.env.is_main:
            checkpoint.save_atomic(self.state(), self.ckpt_path)
        if per:
            barrier(self.env)
            rank_state.prune(self.ckpt_path.parent, self.env.rank, self.step)
        if self.env.is_main:
            checkpoint.keep_recent(self.ckpt_path, self.step, self.cfg.keep_checkpoints)

    def _truncate_log(self) -> None:
        """Drop log rows written after the checkpoint we resume from (they will be written again); the
        training time they cover was lost (``lost_wall_seconds``, measured to the last row written)."""
        if not (self.env.is_main and self.log_path.exists()):
            return
        rows = [json.loads(r) for r in self.log_path.read_text().splitlines() if r.strip()]
        kept = [r for r in rows if r["step"] <= self.step]
        self.lost += max([r["wall_s"] - self.wall for r in rows if r["step"] > self.step] + [0.0])
        self.log_path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def _minutes_due(self, since: float) -> bool:
        """Time-based checkpoint: rank 0's clock decides (checked at log steps when there are several
        processes, so that every rank saves at the same step)."""
        due = (time.monotonic() - since) / 60 >= self.cfg.ckpt_every_minutes
        if self.env.world == 1:
            return due
        return self.step % self.cfg.log_every == 0 and main_decides(due, self.env)

    # -- loop -----------------------------------------------------------------------------------------
    def _autocast(self):
        if self.fast.precision == "bf16":
            return torch.autocast(self.env.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _train_net(self) -> nn.Module:
        """The network the loss sees: DDP-wrapped over several processes, then compiled when on."""
        net = self.net
        if self.env.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            net = DistributedDataParallel(self.net, device_ids=ids)
        return torch.compile(net) if self.fast.compile else net

    def _diverged(self, what: str, step: int) -> TrainingDiverged:
        good = checkpoint.load(self.ckpt_path)["step"] if self.ckpt_path.exists() else None
        kept = (f"the last good checkpoint (step {good}) is kept at {self.ckpt_path}" if good is not None
                else "no checkpoint was written yet")
        return TrainingDiverged(f"training diverged: non-finite {what} at step {step}; {kept}; "
                                f"lower train.lr, raise train.warmup_steps or set train.grad_clip",
                                what, step, good, self.ckpt_path)

    def check_finite(self, collective: bool = True) -> None:
        """Raise ``TrainingDiverged`` if any step so far had a non-finite loss or gradient (a device sync;
        ``collective``: over all processes, so every rank calls it at the same step, as hooks run)."""
        bad = self.window.bad_step(collective)
        if bad is not None:
            raise self._diverged(bad[1], bad[0])

    def _save_checked(self) -> None:
        """A checkpoint, never of a state reached through a non-finite step (this process's own check:
        time-based checkpoints need not fall on the same step on every rank)."""
        self.check_finite(collective=False)
        self.save()

    def fit(self) -> TrainSummary:
        cfg = self.cfg
        resumed = self.restore()
        if resumed and self.step < cfg.steps:
            self.log(f"resuming from step {self.step} ({self.ckpt_path})")
        set_fused(self.opt, self.fast.fused_adamw)     # a checkpoint's param groups carry its writer's flags
        self._truncate_log()
        train_net = self._train_net()
        prepare_feature_modules(self.method, self.fast, self.env.device)
        self.window.restart_clock()
        t_start, t_ckpt = time.monotonic(), time.monotonic()
        wall0 = self.wall
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and self.env.is_main),
                   dynamic_ncols=True, mininterval=1.0)
        with self.log_path.open("a") if self.env.is_main else contextlib.nullcontext() as log_file:
            while self.step < cfg.steps:
                self._step(train_net)
                self.step += 1
                self.images += cfg.batch_size
                self.wall = wall0 + time.monotonic() - t_start
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row = self._log_row()
                    if log_file is not None:
                        log_file.write(json.dumps(row) + "\n")
                        log_file.flush()
                    bar.set_postfix(loss=f"{row['loss']:.4g}", img_s=f"{row['images_per_s']:.0f}")
                bar.update(1)
                due = self._minutes_due(t_ckpt)
                if self.step % cfg.ckpt_every_steps == 0 or self.step == cfg.steps or due:
                    self._save_checked()
                    t_ckpt = time.monotonic()
                for hook in self.hooks:
                    hook(self)
                if self.stop_reason is not None:
                    self._save_checked()
                    self.log(f"stopping at step {self.step}: {self.stop_reason}")
                    break
        bar.close()
        self.check_finite()
        return self.summary(self.window.final_loss())

    def _log_row(self) -> dict:
        """One log row: the window's means, read from the device at once; raises on a bad step."""
        means, rate, bad = self.window.read()
        if bad is not None:
            raise self._diverged(bad[1], bad[0])
        return {"step": self.step, "images": self.images, "lr": self._lr(self.step - 1), "wall_s": round(self.wall, 3),
                "images_per_s": rate, **means}

    def _lr(self, step: int) -> float:
        c = self.cfg
        return lr_at(step, c.lr, c.steps, c.warmup_steps, c.schedule, c.min_lr)

    def _step(self, train_net: nn.Module) -> None:
        """One optimisation step, without a host sync: its numbers go to ``self.window`` on the device."""
        env = self.env
        torch.manual_seed(mix_seed(self.seed, env.rank, self.step))
        batch = self.data.batch(self.step, self.seed, env.rank, env.world, self.local_batch, env.device)
        for group in self.opt.param_groups:
            group["lr"] = self._lr(self.step)
        self.opt.zero_grad(set_to_none=True)
        loss, diag = self._forward_backward(train_net, batch)
        grad_norm = self._clip_gradients()
        self.opt.step()
        self.ema.update(self.net)
        self.window.add(self.step, loss, grad_norm, diag, self.cfg.batch_size)

    def _forward_backward(self, train_net: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        """Loss and gradients of the whole batch, in ``train.accum_steps`` micro-batches (DDP reduces the
        gradients once, after the last); returns the detached mean loss and mean diagnostics."""
        parts = micro_batches(batch, self.fast.accum_steps)
        loss_sum, diag_sum = None, {}
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            sync = contextlib.nullcontext() if last or not hasattr(train_net, "no_sync") else train_net.no_sync()
            with sync:
                with self._autocast():
                    loss, diag = self.method.loss(train_net, part)
                (loss / len(parts) if len(parts) > 1 else loss).backward()
            if len(parts) == 1:
                return loss.detach(), diag
            loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
            for k, v in diag.items():
                diag_sum[k] = diag_sum[k] + v if k in diag_sum else v
        return loss_sum / len(parts), {k: v / len(parts) for k, v in diag_sum.items()}

    def _clip_gradients(self) -> torch.Tensor:
        """The global gradient norm (a device tensor), clipped to ``train.grad_clip`` when it is > 0."""
        params = [p for p in self.net.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(params, self.cfg.grad_clip, norm)
        return norm

    def summary(self, final_loss: float | None) -> TrainSummary:
        gpus = self.env.world if self.env.device.type == "cuda" else 0
        return TrainSummary(status="finished" if self.step >= self.cfg.steps else "partial", steps=self.step,
                            images_seen=self.images, wall_seconds=round(self.wall, 3), resumes=self.resumes,
                            images_per_second=round(self.images / self.wall, 2) if self.wall > 0 else 0.0,
                            final_loss=final_loss, gpu_hours=round(gpus * self.wall / 3600, 4),
                            fast_path=self.fast.as_record(), lost_wall_seconds=round(self.lost, 3))

