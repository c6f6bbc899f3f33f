"""AdamW and the learning-rate schedule as a pure function of the step (nothing to restore on resume).

Linear warmup from ``lr * 1e-3`` (the official drifting release warms up from ~1e-6 at lr 2e-4..4e-4)
to ``lr``, then constant (the paper's setting) or cosine decay to ``min_lr``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from methods.harness.train_config import SCHEDULES


def lr_at(step: int, lr: float, total_steps: int, warmup_steps: int = 0, schedule: str = "constant",
          min_lr: float = 0.0) -> float:
    if schedule not in SCHEDULES:
        raise ValueError(f"train.schedule must be one of {list(SCHEDULES)}, got '{schedule}'")
    if step < warmup_steps:
        start = lr * 1e-3
        return start + (lr - start) * step / warmup_steps
    if schedule == "constant":
        return lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(net: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]):
    return torch.optim.AdamW(net.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
