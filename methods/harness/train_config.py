"""The harness's training budget and optimiser settings (``train.*``), without torch.

Kept apart from ``trainer.py`` so that the command line can type-check ``train.*`` before torch is
imported (a mistyped value is refused in well under 2 s; ``bench/perf/first_error.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

SCHEDULES = ("constant", "cosine")


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
    keep_checkpoints: int = 0            # also keep the last k checkpoints as step_<N>.pt (0: last.pt only)
    log_every: int = 50
    progress: bool = True
    retrain: bool = False                # train task: train again when the record exists but the checkpoint is gone
    accum_steps: int = 1                 # micro-batches per step (equal to the whole batch; fast_path.py)
    tf32: bool = True                    # TF32 matmuls/convolutions on CUDA
    compile: bool | None = None          # torch.compile of network and feature encoder; null: on CUDA only
    fused_adamw: bool | None = None      # fused AdamW kernel; null: on CUDA only
    channels_last: bool | None = None    # NHWC feature encoder; null: on CUDA only
    eval_every: int = 0                  # images between quality checks during training (0: off; bench/train_quality.py)
    eval_samples: int = 500              # samples per check
    collapse_below: float = 0.5          # warn below this fraction of the modes a perfect sampler covers

    def validate(self, world: int = 1) -> None:
        checks = [
            (self.steps >= 1, f"train.steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1 and self.batch_size % world == 0,
             f"train.batch_size={self.batch_size} must be >= 1 and divisible by the {world} processes"),
            (self.accum_steps >= 1 and self.batch_size % (world * self.accum_steps) == 0,
             f"train.accum_steps={self.accum_steps} must be >= 1 and divide the per-process batch "
             f"{self.batch_size // max(world, 1)}"),
            (self.lr > 0, f"train.lr must be > 0, got {self.lr}"),
            (self.schedule in SCHEDULES, f"train.schedule must be one of {list(SCHEDULES)}, got '{self.schedule}'"),
            (self.precision in ("auto", "fp32", "bf16"),
             f"train.precision must be auto, fp32 or bf16, got '{self.precision}'"),
            (0 <= self.warmup_steps, f"train.warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.ckpt_every_steps >= 1, f"train.ckpt_every_steps must be >= 1, got {self.ckpt_every_steps}"),
            (self.keep_checkpoints >= 0, f"train.keep_checkpoints must be >= 0, got {self.keep_checkpoints}"),
            (self.log_every >= 1, f"train.log_every must be >= 1, got {self.log_every}"),
            (self.grad_clip >= 0, f"train.grad_clip must be >= 0 (0 disables), got {self.grad_clip}"),
            (self.eval_every >= 0 and self.eval_samples >= 1 and 0 <= self.collapse_below <= 1,
             f"train.eval_every must be >= 0 (0 disables), train.eval_samples >= 1 and train.collapse_below in "
             f"[0, 1], got {self.eval_every}, {self.eval_samples}, {self.collapse_below}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
