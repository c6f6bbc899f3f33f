"""Classifier-free guidance (Ho and Salimans 2022) shared by the multi-step baselines.

Training drops each label to the null class ``num_classes`` with probability ``p`` (drawn from
``batch.random``, so resume and 1-vs-N-process runs agree). Sampling with guidance ``w`` evaluates the
conditional and the unconditional prediction in one batch of 2B rows and returns
``uncond + w * (cond - uncond)``; ``w = 1`` means no guidance and runs the conditional pass alone.
Because the network is called on 2B rows, ``bench.sampling.NFECounter`` counts a guided step twice.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.base import NFEError, StepRandom


def drop_labels(y: Tensor, p: float, null_label: int, random: StepRandom) -> Tensor:
    """``y`` with each label replaced by ``null_label`` with probability ``p`` (label dropout)."""
    drop = random.rand() < p
    return torch.where(drop.to(y.device), torch.full_like(y, null_label), y)


def sample_labels(conditional: bool, y: Tensor | None, n: int, null_label: int, device) -> Tensor | None:
    """Labels to sample with: None for unconditional models; the null label when a conditional model is
    sampled without labels (its unconditional branch)."""
    if not conditional:
        return None
    if y is None:
        return torch.full((n,), null_label, dtype=torch.long, device=device)
    return y.to(device)


def guided(net: nn.Module, x: Tensor, cond: dict[str, Tensor], y: Tensor | None, guidance: float,
           null_label: int) -> Tensor:
    """The network's prediction at ``x``, guided with scale ``guidance`` when ``y`` is given.

    ``cond`` holds the per-row scalar conditions (``t``, ``r``). Unconditional methods (``y is None``)
    and ``guidance == 1`` make one pass of B rows; guided sampling makes one pass of 2B rows.
    """
    if y is None:
        return net(x, cond)
    if guidance == 1.0:
        return net(x, {**cond, "y": y})
    both = {k: torch.cat([v, v]) for k, v in cond.items()}
    both["y"] = torch.cat([y, torch.full_like(y, null_label)])
    out_c, out_u = net(torch.cat([x, x]), both).chunk(2)
    return out_u + guidance * (out_c - out_u)


def passes_per_step(conditional: bool, guidance: float) -> int:
    """Network rows per image per solver evaluation: 2 for a guided step, else 1."""
    return 2 if conditional and guidance != 1.0 else 1


def check_guidance(name: str, conditional: bool, label_dropout: float, guidance: float) -> None:
    """Guidance needs a conditional model that also learned the unconditional (null-label) prediction."""
    if guidance <= 0:
        raise NFEError(f"{name}: eval.guidance must be > 0 (1.0 = no guidance), got {guidance}")
    if guidance != 1.0 and not conditional:
        raise NFEError(f"{name}: guidance {guidance:g} needs a class-conditional model; set "
                       f"method.conditional=true or eval.guidance=[1.0]")
    if guidance != 1.0 and label_dropout == 0.0:
        raise NFEError(f"{name}: guidance {guidance:g} needs an unconditional branch; train with "
                       f"method.label_dropout > 0 or use eval.guidance=[1.0]")


def check_label_dropout(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"method.label_dropout must lie in [0, 1), got {p}")
