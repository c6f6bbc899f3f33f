"""Rectified flow / conditional flow matching as a ``Method`` (Liu et al. 2023; Lipman et al. 2023).

Linear path with t = 0 at the data and t = 1 at the noise (the MeanFlow convention, so both share one
time axis): z_t = (1 - t) x + t eps, target velocity v = dz_t/dt = eps - x, loss E ||v_theta(z_t, t) - v||^2.
Training time t is uniform on [0, 1] or logit-normal, t = sigmoid(N(m, s^2)) (Esser et al. 2024, SD3).
Sampling integrates dz/dt = v_theta from t = 1 to t = 0 on a uniform grid with the solvers of
``methods.ode``; classifier-free guidance combines conditional and null-label velocities
(``methods.cfg``), which doubles the rows evaluated per step.

NFE per image (asserted by the tests through ``bench.sampling.NFECounter``), with P = 2 for a guided
step and 1 otherwise: euler N*P, midpoint 2N*P, heun 2N*P (every step corrected), dopri5 whatever the
error control used (the requested NFE is its ceiling).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods.base import Batch, NFEError, StepRandom, per_image_noise
from methods.cfg import check_guidance, check_label_dropout, drop_labels, guided, passes_per_step
from methods.ode import ADAPTIVE, EVALS_PER_STEP, SOLVERS, integrate_dopri5, integrate_fixed
from methods.registry import register_method
from methods.time_conditioned import TimeConditioned

TIME_DISTS = ("uniform", "logit_normal")
POWERS_OF_TWO = [1, 2, 4, 8, 16, 32, 64, 128]


def draw_times(random: StepRandom, dist: str, mean: float, std: float) -> Tensor:
    """One training time per sample in (0, 1): uniform, or logit-normal sigmoid(N(mean, std^2))."""
    if dist == "uniform":
        return random.rand()
    return torch.sigmoid(mean + std * random.randn())


def bcast(t: Tensor, like: Tensor) -> Tensor:
    """``t [B]`` shaped to broadcast against ``like [B, ...]``."""
    return t.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def check_time_dist(dist: str, std: float) -> None:
    if dist not in TIME_DISTS:
        raise ValueError(f"method.time_dist must be one of {list(TIME_DISTS)}, got '{dist}'")
    if std <= 0:
        raise ValueError(f"method.logit_std must be > 0, got {std}")


@register_method
class FlowMatching(TimeConditioned):
    name = "flow"

    @dataclass
    class Config:
        name: str = "flow"
        sampler: str = "euler"              # euler | midpoint | heun | dopri5
        time_dist: str = "uniform"          # uniform | logit_normal
        logit_mean: float = 0.0             # logit-normal location m (SD3: 0)
        logit_std: float = 1.0              # logit-normal scale s (SD3: 1)
        conditional: bool = False           # class-conditional (labels as "y"; null label for CFG)
        label_dropout: float = 0.1          # probability of training on the null label (CFG)
        rtol: float = 1.0e-5                # dopri5 tolerances
        atol: float = 1.0e-5

    def __init__(self, cfg: "FlowMatching.Config"):
        if cfg.sampler not in SOLVERS:
            raise ValueError(f"method.sampler must be one of {list(SOLVERS)}, got '{cfg.sampler}'")
        check_time_dist(cfg.time_dist, cfg.logit_std)
        check_label_dropout(cfg.label_dropout)
        if cfg.rtol <= 0 or cfg.atol <= 0:
            raise ValueError(f"method.rtol and method.atol must be > 0, got {cfg.rtol}, {cfg.atol}")
        self.cfg, self.conditional = cfg, cfg.conditional
        self.shape: tuple[int, ...] | None = None
        self.null_label = 0

    def _cond(self, t: Tensor, y: Tensor) -> dict[str, Tensor]:
        return {"t": t, "y": y} if self.conditional else {"t": t}

    def loss(self, net: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        x = batch.x.float()
        c = self.cfg
        t = draw_times(batch.random, c.time_dist, c.logit_mean, c.logit_std)
        eps = batch.randn_like_x()
        y = drop_labels(batch.y, c.label_dropout, self.null_label, batch.random) if self.conditional else batch.y
        z = (1 - bcast(t, x)) * x + bcast(t, x) * eps
        v = eps - x
        loss = (net(z, self._cond(t, y)).float() - v).pow(2).mean()
        return loss, {}

    def sample(self, net: nn.Module, noise_seeds: Tensor, y: Tensor | None, nfe: int,
               guidance: float) -> Tensor:
        device, y = self.start_sampling(net, noise_seeds, y, nfe, guidance)
        x = per_image_noise(noise_seeds, self.shape, device)
        passes = passes_per_step(self.conditional, guidance)

        def velocity(yy: Tensor | None):
            return lambda z, t: guided(net, z, {"t": t}, yy, guidance, self.null_label)

        if self.cfg.sampler in ADAPTIVE:
            def rows_velocity(z: Tensor, t: Tensor, rows: Tensor) -> Tensor:
                return velocity(None if y is None else y[rows])(z, t)
            return integrate_dopri5(rows_velocity, x, 1.0, 0.0, self.cfg.rtol, self.cfg.atol, nfe // passes)[0]
        steps = nfe // (passes * EVALS_PER_STEP[self.cfg.sampler])
        ts = torch.linspace(1.0, 0.0, steps + 1)
        return integrate_fixed(velocity(y), x, ts, self.cfg.sampler)

    def default_nfe(self) -> list[int]:
        if self.cfg.sampler in ADAPTIVE:
            return [1000]
        per = EVALS_PER_STEP[self.cfg.sampler]
        return [n for n in POWERS_OF_TWO if n % per == 0]

    def check_nfe(self, nfe: int, guidance: float) -> None:
        check_guidance(self.name, self.conditional, self.cfg.label_dropout, guidance)
        passes = passes_per_step(self.conditional, guidance)
        guided_note = " (a guided step evaluates 2 rows per image)" if passes == 2 else ""
        if self.cfg.sampler in ADAPTIVE:
            if nfe < 8 * passes:
                raise NFEError(f"flow sampler dopri5 treats eval.nfe as a ceiling on evaluations per image and "
                               f"needs at least {8 * passes}{guided_note}, got {nfe}")
            return
        per = EVALS_PER_STEP[self.cfg.sampler] * passes
        if nfe < per or nfe % per:
            raise NFEError(f"flow sampler {self.cfg.sampler} evaluates the network {per} time(s) per step"
                           f"{guided_note}: eval.nfe must be a positive multiple of {per} "
                           f"(e.g. {per}, {2 * per}, {4 * per}), got {nfe}")
