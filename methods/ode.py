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
- ``dopri5``: Dormand-Prince 5(4) with adaptive steps, the whole batch at once with one step size and
  error control per image (a shared step size, as torchdiffeq's, would make image i depend on the rest of
  its batch; torchdiffeq solving image by image is the reference it is tested against). Evaluations are
  counted per image; ``max_evals`` is a ceiling.
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


# Dormand-Prince 5(4) (Dormand and Prince 1980; torchdiffeq's tableau): stage times, stage weights (the last
# row is the 5th-order solution) and the weights of the embedded error estimate (5th minus 4th order).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_E = (35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
      -2187 / 6784 + 12231 / 42400, 11 / 84 - 649 / 6300, -1 / 60)
SAFETY, IFACTOR, DFACTOR = 0.9, 10.0, 0.2       # torchdiffeq's step-size controller


def _rms(v: Tensor) -> Tensor:
    """Root mean square of each row (torchdiffeq's ``_rms_norm`` over one image)."""
    return v.flatten(1).double().pow(2).mean(1).sqrt()


def _rows(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def integrate_dopri5(f: Callable[[Tensor, Tensor, Tensor], Tensor], x: Tensor, t0: float, t1: float, rtol: float,
                     atol: float, max_evals: int) -> tuple[Tensor, list[int]]:
    """Adaptive Dormand-Prince from ``t0`` to ``t1`` for the whole batch at once; returns (x(t1), evaluations
    per image).

    ``f(x_rows, t_rows, rows)`` is the velocity of the batch rows ``rows`` (indices, e.g. to pick their
    labels). Every image has its own time, step size and error control (torchdiffeq's, per image: Hairer's
    initial step, RMS error ratio, safety 0.9, growth 10, shrink 0.2), so image i takes the steps it would
    take alone; each network call evaluates the images still integrating. The last step of an image ends
    exactly at ``t1`` (torchdiffeq steps past it and interpolates back). At most ``max_evals`` per image.
    """
    b, sign, span = x.shape[0], (1.0 if t1 >= t0 else -1.0), abs(t1 - t0)
    evals = torch.zeros(b, dtype=torch.long, device=x.device)

    def rhs(xr: Tensor, tau: Tensor, rows: Tensor) -> Tensor:
        evals[rows] += 1
        if int(evals[rows].max()) > max_evals:
            raise NFEError(f"dopri5 needed more than {max_evals} evaluations for one image at rtol={rtol:g}, "
                           f"atol={atol:g}: raise eval.nfe (the ceiling) or loosen method.rtol/method.atol")
        return sign * f(xr, (t0 + sign * tau).to(x.dtype), rows)

    rows = torch.arange(b, device=x.device)
    tau = torch.zeros(b, dtype=torch.float64, device=x.device)
    k1 = rhs(x, tau, rows)
    scale = atol + x.abs() * rtol                                  # Hairer, Norsett and Wanner, II.4
    d0, d1 = _rms(x / scale), _rms(k1 / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    d2 = _rms((rhs(x + _rows(h0, x) * k1, h0, rows) - k1) / scale) / h0
    h1 = torch.where((d1 <= 1e-15) & (d2 <= 1e-15), torch.clamp(h0 * 1e-3, min=1e-6),
                     (0.01 / torch.maximum(d1, d2)) ** (1 / 5))
    h = torch.minimum(100 * h0, h1)
    x = x.clone()
    while len(rows):
        xa, ta = x[rows], tau[rows]
        ha = torch.minimum(h[rows], span - ta)
        ks = [k1[rows]]
        for i in range(1, 7):
            xi = xa + _rows(ha, xa) * sum(a * k for a, k in zip(_A[i], ks) if a)
            ks.append(rhs(xi, ta + _C[i] * ha, rows))
        err = _rows(ha, xa) * sum(e * k for e, k in zip(_E, ks) if e)
        ratio = _rms(err / (atol + rtol * torch.maximum(xa.abs(), xi.abs())))
        ok = ratio <= 1
        done = rows[ok]
        x[done], k1[done] = xi[ok], ks[6][ok]
        tau[done] = torch.where(ha[ok] >= span - ta[ok], torch.full_like(ha[ok], span), ta[ok] + ha[ok])
        floor = torch.where(ok, torch.ones_like(ratio), torch.full_like(ratio, DFACTOR))
        grow = torch.clamp(SAFETY / ratio.clamp_min(1e-300) ** (1 / 5), max=IFACTOR)
        h[rows] = ha * torch.where(ratio == 0, torch.full_like(ratio, IFACTOR), torch.maximum(grow, floor))
        rows = rows[tau[rows] < span]
    return x, evals.tolist()
