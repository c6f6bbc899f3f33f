"""Training-time classifier-free guidance of drifting (PAPER.md section 3; Deng et al. 2026, Eqs. 15-16).

The negatives of class c are mixed with N_unc unconditional real samples of weight w, so the equilibrium
is q(.|c) = alpha p(.|c) - (alpha - 1) p(.) with alpha = ((N_neg - 1) + N_unc w) / (N_neg - 1), i.e.
``w = (alpha - 1)(N_neg - 1) / N_unc`` (A.7; N_neg - 1 because a generated sample is not its own
negative). The generator is conditioned on alpha, drawn per class from p(alpha) proportional to
alpha^-k on [alpha_min, alpha_max] by inverse CDF (the release's ``train_step``):
``alpha = (a0^(1-k) + u (a1^(1-k) - a0^(1-k)))^(1/(1-k))`` (log-uniform for k = 1), and set to 1 with
probability ``no_cfg_frac``. Table 8: k = 3 (ablation), k = 5 (B/2, pixel), 50% alpha = 1 + k = 3 (L/2).
At inference alpha is the ``guidance`` knob, still one network evaluation.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def check_alpha_law(alpha_min: float, alpha_max: float, exponent: float, no_cfg_frac: float) -> None:
    if not 1.0 <= alpha_min <= alpha_max:
        raise ValueError(f"CFG alpha range must satisfy 1 <= alpha_min <= alpha_max, got [{alpha_min}, {alpha_max}]")
    if exponent < 0:
        raise ValueError(f"CFG alpha exponent must be >= 0, got {exponent}")
    if not 0.0 <= no_cfg_frac <= 1.0:
        raise ValueError(f"no_cfg_frac must lie in [0, 1], got {no_cfg_frac}")


def sample_alpha(n: int, alpha_min: float = 1.0, alpha_max: float = 4.0, exponent: float = 3.0,
                 no_cfg_frac: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """``n`` draws of alpha from p(alpha) ~ alpha^-exponent on [alpha_min, alpha_max] (float32, CPU)."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    off = torch.rand(n, generator=generator, dtype=torch.float64)
    return alpha_from_uniforms(u, off, alpha_min, alpha_max, exponent, no_cfg_frac)


def alpha_from_uniforms(u: Tensor, off: Tensor, alpha_min: float = 1.0, alpha_max: float = 4.0,
                        exponent: float = 3.0, no_cfg_frac: float = 0.0) -> Tensor:
    """Alpha by inverse CDF of the uniform ``u``, set to 1 where the uniform ``off < no_cfg_frac``
    (float32; training draws ``u`` and ``off`` keyed by the group's global index)."""
    check_alpha_law(alpha_min, alpha_max, exponent, no_cfg_frac)
    u, off = u.double(), off.double()
    pw = 1.0 - exponent
    if abs(pw) < 1e-6:
        alpha = torch.exp(math.log(alpha_min) + u * (math.log(alpha_max) - math.log(alpha_min)))
    else:
        alpha = (alpha_min ** pw + u * (alpha_max ** pw - alpha_min ** pw)) ** (1.0 / pw)
    return torch.where(off < no_cfg_frac, torch.ones_like(alpha), alpha).float()


def alpha_cdf(a: Tensor, alpha_min: float, alpha_max: float, exponent: float) -> Tensor:
    """The CDF of the power law (without the alpha = 1 atom), for tests and plots."""
    pw = 1.0 - exponent
    if abs(pw) < 1e-6:
        return (a.log() - math.log(alpha_min)) / (math.log(alpha_max) - math.log(alpha_min))
    return (a ** pw - alpha_min ** pw) / (alpha_max ** pw - alpha_min ** pw)


def unconditional_weight(alpha: Tensor, n_neg: int, n_unc: int) -> Tensor:
    """A.7: weight of each unconditional negative, ``(alpha - 1)(N_neg - 1) / N_unc`` (0 when N_unc = 0)."""
    if n_neg < 2:
        raise ValueError(f"CFG needs at least 2 generated samples per class (N_neg - 1 > 0), got {n_neg}")
    return (alpha - 1.0) * (n_neg - 1) / max(1, n_unc)


def effective_alpha(w: Tensor, n_neg: int, n_unc: int) -> Tensor:
    """Inverse of ``unconditional_weight``: alpha = ((N_neg - 1) + N_unc w) / (N_neg - 1)."""
    return ((n_neg - 1) + n_unc * w) / (n_neg - 1)
