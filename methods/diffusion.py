"""DDPM-style diffusion as a ``Method`` (Ho et al. 2020), sampled through diffusers' schedulers.

Training: integer timestep k ~ U{0..T-1}, x_k = sqrt(abar_k) x + sqrt(1 - abar_k) eps (DDPM Eq. 4), and the
network regresses either eps (DDPM Eq. 14, "epsilon") or v = sqrt(abar_k) eps - sqrt(1 - abar_k) x
(Salimans and Ho 2022, "v_prediction"). Schedules: linear (DDPM), cosine (Nichol and Dhariwal 2021,
diffusers' "squaredcos_cap_v2") and scaled-linear (Stable Diffusion). The backbone sees the time as
k / T in [0, 1) under the key "t".

Samplers (diffusers' timestep grids, ``timestep_spacing="trailing"`` so that every step count starts from
the last training timestep, Lin et al. 2024); N is the number of scheduler steps:
- ``ddpm``: ancestral DDPM, the DDIM update with eta = 1 (DDIM Eq. 16: eta = 1 is the DDPM posterior
  q(x_prev | x_k, x0_hat) with its fixed-small variance, on any sub-sequence of timesteps); the step noise
  is drawn per image from its seed (``per_image_noise(..., draws=N + 1)``). N evaluations.
- ``ddim``: deterministic DDIM (eta = ``method.eta``, default 0). N evaluations.
  Both step from each grid entry to the next one (``ddim_step``), not through ``DDIMScheduler.step``.
- ``dpmpp_2m``: DPM-Solver++(2M) (Lu et al. 2022), ``DPMSolverMultistepScheduler``. N evaluations.
- ``euler``: ``EulerDiscreteScheduler`` (Karras et al. 2022 Euler on the sigma ODE). N evaluations.
- ``heun``: ``HeunDiscreteScheduler`` (Karras et al. 2022 Alg. 1): a second-order correction on every
  step but the last, which ends at sigma = 0: 2N - 1 evaluations.
A guided step (CFG, ``methods.cfg``) evaluates 2 rows per image, so every count doubles.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods.base import Batch, NFEError, per_image_noise
from methods.cfg import check_guidance, check_label_dropout, drop_labels, guided, passes_per_step
from methods.flow import POWERS_OF_TWO, bcast
from methods.registry import register_method
from methods.time_conditioned import TimeConditioned

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "scaled_linear": "scaled_linear"}
DEFAULT_BETAS = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012), "cosine": (1e-4, 0.02)}
PREDICTIONS = ("epsilon", "v_prediction")
SAMPLERS = ("ddpm", "ddim", "dpmpp_2m", "euler", "heun")


def grid_pairs(timesteps: Tensor) -> list[tuple[int, int]]:
    """(t, t_prev) for every step of a descending timestep grid: t_prev is the next entry, -1 after the last
    (the end of the chain, where abar = 1)."""
    ts = [int(t) for t in timesteps]
    return list(zip(ts, ts[1:] + [-1]))


def ddim_step(abar: Tensor, t: int, t_prev: int, x: Tensor, out: Tensor, prediction: str, eta: float = 0.0,
              noise: Tensor | None = None) -> Tensor:
    """One DDIM step (Song et al. 2021, Eq. 12; eta > 0: Eq. 16) from timestep ``t`` to ``t_prev`` of the grid.

    Why not ``DDIMScheduler.step``: diffusers 0.42.1 takes the previous timestep as t - T // N, which is the
    next grid entry only when N divides T (upstream issues 9261 and 12633). At N = 64 the trailing grid's
    last entry is 15, the step goes to 0 instead of the end, and samples keep sqrt(1 - abar_0) of noise
    (ENVIRONMENT.md: an exact oracle on a 0.01-wide mode gives std 0.0125 at 64 steps, 0.0174 at 128)."""
    a_t = abar[t]
    a_prev = abar[t_prev] if t_prev >= 0 else torch.ones_like(a_t)
    if prediction == "epsilon":
        eps = out
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    else:                                                    # v = sqrt(abar) eps - sqrt(1 - abar) x0
        x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * out
        eps = a_t.sqrt() * out + (1 - a_t).sqrt() * x
    std = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
    x_prev = a_prev.sqrt() * x0 + (1 - a_prev - std**2).clamp(min=0).sqrt() * eps
    return x_prev + std * noise if eta > 0 else x_prev


def make_scheduler(sampler: str, steps: int, num_train_timesteps: int, schedule: str, beta_start: float,
                   beta_end: float, prediction: str):
    """A fresh diffusers scheduler for ``sampler`` set to ``steps`` steps (schedulers are stateful)."""
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                           HeunDiscreteScheduler)

    common = dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                  beta_schedule=SCHEDULES[schedule], prediction_type=prediction, timestep_spacing="trailing")
    if sampler in ("ddpm", "ddim"):
        s = DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
    elif sampler == "dpmpp_2m":
        s = DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    elif sampler == "euler":
        s = EulerDiscreteScheduler(**common)
    elif sampler == "heun":
        s = HeunDiscreteScheduler(**common)
    else:
        raise ValueError(f"method.sampler must be one of {list(SAMPLERS)}, got '{sampler}'")
    s.set_timesteps(steps)
    return s


class StepSampled:
    """The NFE rules of step samplers, shared by the DDPM family and EDM: N evaluations per pass for N steps,
    2N - 1 for Heun; ``max_steps`` bounds N (the training timesteps of a discrete schedule; None: no bound)."""

    max_steps: int | None = None

    def default_nfe(self) -> list[int]:
        return default_step_nfe(self.cfg.sampler == "heun")

    def check_nfe(self, nfe: int, guidance: float) -> None:
        check_guidance(self.name, self.conditional, self.cfg.label_dropout, guidance)
        check_step_nfe(self.name, self.cfg.sampler, self.cfg.sampler == "heun",
                       passes_per_step(self.conditional, guidance), nfe, self.max_steps)


@register_method
class Diffusion(StepSampled, TimeConditioned):
    name = "diffusion"

    @dataclass
    class Config:
        name: str = "diffusion"
        sampler: str = "ddim"               # ddpm | ddim | dpmpp_2m | euler | heun
        prediction: str = "epsilon"         # epsilon | v_prediction
        schedule: str = "linear"            # linear | cosine | scaled_linear
        num_train_timesteps: int = 1000
        beta_start: float | None = None     # None: the schedule's usual value (linear 1e-4, scaled 0.00085)
        beta_end: float | None = None       # None: linear 0.02, scaled_linear 0.012 (cosine ignores both)
        eta: float = 0.0                    # DDIM stochasticity for sampler=ddim (ddpm is eta = 1)
        conditional: bool = False
        label_dropout: float = 0.1

    def __init__(self, cfg: "Diffusion.Config"):
        for key, value, valid in (("sampler", cfg.sampler, SAMPLERS), ("prediction", cfg.prediction, PREDICTIONS),
                                  ("schedule", cfg.schedule, tuple(SCHEDULES))):
            if value not in valid:
                raise ValueError(f"method.{key} must be one of {list(valid)}, got '{value}'")
        if cfg.num_train_timesteps < 2:
            raise ValueError(f"method.num_train_timesteps must be >= 2, got {cfg.num_train_timesteps}")
        if not 0.0 <= cfg.eta <= 1.0:
            raise ValueError(f"method.eta must lie in [0, 1], got {cfg.eta}")
        check_label_dropout(cfg.label_dropout)
        b0, b1 = DEFAULT_BETAS[cfg.schedule]
        self.betas = (cfg.beta_start if cfg.beta_start is not None else b0,
                      cfg.beta_end if cfg.beta_end is not None else b1)
        if not 0.0 < self.betas[0] < self.betas[1] < 1.0:
            raise ValueError(f"method.beta_start < method.beta_end must lie in (0, 1), got {self.betas}")
        self.cfg, self.conditional = cfg, cfg.conditional
        self.max_steps = cfg.num_train_timesteps
        self.shape: tuple[int, ...] | None = None
        self.null_label = 0
        sched = make_scheduler("ddim", 1, cfg.num_train_timesteps, cfg.schedule, *self.betas, cfg.prediction)
        self.alphas_cumprod = sched.alphas_cumprod.float()     # abar_k, k = 0..T-1

    def _time(self, k: Tensor) -> Tensor:
        return k.float() / self.cfg.num_train_timesteps

    def loss(self, net: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        x = batch.x.float()
        k = batch.random.randint(self.cfg.num_train_timesteps)
        eps = batch.randn_like_x()
        y = drop_labels(batch.y, self.cfg.label_dropout, self.null_label, batch.random) if self.conditional else None
        abar = self.alphas_cumprod.to(x.device)[k.to(x.device)]
        a, s = bcast(abar.sqrt(), x), bcast((1 - abar).sqrt(), x)
        target = eps if self.cfg.prediction == "epsilon" else a * eps - s * x
        cond = {"t": self._time(k)} | ({"y": y} if y is not None else {})
        loss = (net(a * x + s * eps, cond).float() - target).pow(2).mean()
        return loss, {}

    def steps_for(self, nfe: int, guidance: float) -> int:
        return steps_for(nfe, passes_per_step(self.conditional, guidance), self.cfg.sampler == "heun")

    def sample(self, net: nn.Module, noise_seeds: Tensor, y: Tensor | None, nfe: int,
               guidance: float) -> Tensor:
        device, y = self.start_sampling(net, noise_seeds, y, nfe, guidance)
        steps = self.steps_for(nfe, guidance)
        c = self.cfg
        sched = make_scheduler(c.sampler, steps, c.num_train_timesteps, c.schedule, *self.betas, c.prediction)
        stochastic = c.sampler == "ddpm" or (c.sampler == "ddim" and c.eta > 0)
        noise = per_image_noise(noise_seeds, self.shape, device, draws=steps + 1 if stochastic else 1)
        x = (noise[:, 0] if stochastic else noise) * sched.init_noise_sigma
        abar = self.alphas_cumprod.to(device)
        pairs = grid_pairs(sched.timesteps) if c.sampler in ("ddpm", "ddim") else None
        for i, t in enumerate(sched.timesteps):
            t_rows = torch.full((x.shape[0],), float(t), device=device)
            out = guided(net, sched.scale_model_input(x, t), {"t": self._time(t_rows)}, y, guidance,
                         self.null_label)
            if pairs:
                eta = 1.0 if c.sampler == "ddpm" else c.eta
                x = ddim_step(abar, *pairs[i], x, out.to(x.dtype), c.prediction, eta,
                              noise[:, i + 1] if stochastic else None)
            else:
                x = sched.step(out, t, x).prev_sample
        return x



def steps_for(nfe: int, passes: int, second_order: bool) -> int:
    """Solver steps N for ``nfe`` rows per image: N evaluations per pass, or 2N - 1 for Heun (Karras et al.
    2022, Alg. 1: no correction on the last step, which ends at sigma = 0)."""
    calls = nfe // passes
    return (calls + 1) // 2 if second_order else calls


def default_step_nfe(second_order: bool) -> list[int]:
    if second_order:
        return [2 * n - 1 for n in POWERS_OF_TWO if n < 128]   # 1, 3, 7, ..., 127 evaluations
    return list(POWERS_OF_TWO)


def check_step_nfe(name: str, sampler: str, second_order: bool, p: int, nfe: int, max_steps: int | None) -> None:
    """NFEError unless ``nfe`` is N (or 2N - 1 for Heun) evaluations of ``p`` rows, N <= ``max_steps``."""
    note = " (a guided step evaluates 2 rows per image)" if p == 2 else ""
    bound = f" with N <= {max_steps}" if max_steps else ""
    if second_order:
        ok = nfe >= p and nfe % p == 0 and (nfe // p) % 2 == 1
        if not ok or (max_steps and (nfe // p + 1) // 2 > max_steps):
            raise NFEError(f"{name} sampler {sampler} evaluates the network 2N-1 times for N steps{note}: "
                           f"eval.nfe must be {p} x an odd number (e.g. {p}, {3 * p}, {7 * p}){bound}, got {nfe}")
        return
    if nfe < p or nfe % p or (max_steps and nfe // p > max_steps):
        where = f"between {p} and {p * max_steps}" if max_steps else f"of at least {p}"
        raise NFEError(f"{name} sampler {sampler} evaluates the network once per step{note}: "
                       f"eval.nfe must be a multiple of {p} {where}, got {nfe}")
