"""ODE samplers for flow models: fixed-step Euler, midpoint and Heun, and adaptive dopri5.

A velocity function ``f(x [B, ...], t [B]) -> dx/dt`` is integrated along the time grid ``ts`` (any
direction; the flow methods go from t = 1, noise, to t = 0, data). Network evaluations per image
(each call of ``f`` evaluates every row once):

- ``euler``: N steps, N evaluations.
- ``midpoint``: explicit midpoint rule (RK2), 2 evaluations per step: 2N.
- ``heun``: Heun's method (trapezoidal predictor-corrector, RK2), 2 evaluations per step on every step,
  the last included: 2N. (Karras et al. 2022's EDM sampler skips the correction on the last step and
  uses 2N - 1 because its last step ends at sigma = 0; a flow's velocity is defined at t = 0, so this
  Heun corrects every step. The diffusion baseline's Heun, diffusers' ``HeunDiscreteScheduler``, is the
  EDM form with 2N - 1.)
- ``dopri5``: Dormand-Prince 5(4) with adaptive steps (torchdiffeq). Its step count is chosen by the
  error control, so each image is solved on its own (a shared step size would make image i depend on
  the rest of its batch) and its evaluations are counted; ``max_evals`` is a ceiling.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from methods.base import NFEError

Velocity = Callable[[Tensor, Tensor], Tensor]

EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2}
FIXED_STEP = tuple(EVALS_PER_STEP)
ADAPTIVE = ("dopri5",)
SOLVERS = FIXED_STEP + ADAPTIVE


def _times(t: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)


def integrate_fixed(f: Velocity, x: Tensor, ts: Tensor, solver: str) -> Tensor:
    """Integrate ``dx/dt = f(x, t)`` over the grid ``ts`` (``len(ts) - 1`` steps) with a fixed-step solver."""
    if solver not in EVALS_PER_STEP:
        raise ValueError(f"unknown fixed-step solver '{solver}'; choose one of: {', '.join(FIXED_STEP)}")
    for t0, t1 in zip(ts[:-1].tolist(), ts[1:].tolist()):
        h = t1 - t0
        if solver == "euler":
            x = x + h * f(x, _times(t0, x))
        elif solver == "midpoint":
            x_mid = x + 0.5 * h * f(x, _times(t0, x))
            x = x + h * f(x_mid, _times(t0 + 0.5 * h, x))
        else:  # heun
            k1 = f(x, _times(t0, x))
            k2 = f(x + h * k1, _times(t1, x))
            x = x + 0.5 * h * (k1 + k2)
    return x


class _CountedImage:
    """One image's ODE right-hand side for torchdiffeq, counting its evaluations against a ceiling."""

    def __init__(self, f: Velocity, max_evals: int, rtol: float, atol: float):
        self.f, self.max_evals, self.rtol, self.atol = f, max_evals, rtol, atol
        self.evals = 0

    def __call__(self, t: Tensor, x: Tensor) -> Tensor:
        self.evals += 1
        if self.evals > self.max_evals:
            raise NFEError(f"dopri5 needed more than {self.max_evals} evaluations for one image at "
                           f"rtol={self.rtol:g}, atol={self.atol:g}: raise eval.nfe (the ceiling) or "
                           f"loosen method.rtol/method.atol")
        return self.f(x, t.reshape(1).to(x.dtype).expand(x.shape[0]))


def integrate_dopri5(f: Velocity, x: Tensor, t0: float, t1: float, rtol: float, atol: float,
                     max_evals: int) -> tuple[Tensor, list[int]]:
    """Adaptive Dormand-Prince from ``t0`` to ``t1``, image by image; returns (x(t1), evaluations per image)."""
    from torchdiffeq import odeint

    span = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
    out, evals = [], []
    for i in range(x.shape[0]):
        rhs = _CountedImage(f, max_evals, rtol, atol)
        out.append(odeint(rhs, x[i:i + 1], span, method="dopri5", rtol=rtol, atol=atol)[-1])
        evals.append(rhs.evals)
    return torch.cat(out), evals
