"""AdamW and the learning-rate schedule as a pure function of the step (nothing to restore on resume).

AdamW is fused (one kernel) when ``train.fused_adamw`` is on: the same update as the foreach kernels up to
float rounding. Linear warmup from 1e-6 (the official drifting release's ``optax.linear_schedule(init_value=1e-6,
...)``, for the generator and the MAE alike) to ``lr``, then constant (the paper's setting) or cosine decay to
``min_lr``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from methods.harness.train_config import SCHEDULES

WARMUP_START = 1e-6


def lr_at(step: int, lr: float, total_steps: int, warmup_steps: int = 0, schedule: str = "constant",
          min_lr: float = 0.0) -> float:
    if schedule not in SCHEDULES:
        raise ValueError(f"train.schedule must be one of {list(SCHEDULES)}, got '{schedule}'")
    if step < warmup_steps:
        return WARMUP_START + (lr - WARMUP_START) * step / warmup_steps
    if schedule == "constant":
        return lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(net: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], fused: bool = False):
    """AdamW; ``fused``: one kernel for all parameters (``train.fused_adamw``), else the foreach kernels."""
    return torch.optim.AdamW(net.parameters(), lr=lr, betas=betas, weight_decay=weight_decay,
                             fused=True if fused else None)


def set_fused(opt: torch.optim.Optimizer, fused: bool) -> None:
    """Re-apply the kernel choice after ``load_state_dict``, which restores the saving run's flags (and
    keeps step counters where that run's kernel wants them: on the parameter's device for the fused one)."""
    for group in opt.param_groups:
        group["fused"] = True if fused else None
        if fused:
            group["foreach"] = None
        for p in group["params"]:
            state = opt.state.get(p, {})
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(p.device if fused else "cpu", torch.float32)
