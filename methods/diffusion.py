"""DDPM-style diffusion as a ``Method`` (Ho et al. 2020), sampled through diffusers' schedulers.

Training: integer timestep k ~ U{0..T-1}, x_k = sqrt(abar_k) x + sqrt(1 - abar_k) eps (DDPM Eq. 4), and the
network regresses either eps (DDPM Eq. 14, "epsilon") or v = sqrt(abar_k) eps - sqrt(1 - abar_k) x
(Salimans and Ho 2022, "v_prediction"). Schedules: linear (DDPM), cosine (Nichol and Dhariwal 2021,
diffusers' "squaredcos_cap_v2") and scaled-linear (Stable Diffusion). The backbone sees the time as
k / T in [0, 1) under the key "t".

Samplers (diffusers, ``timestep_spacing="trailing"`` so that every step count starts from the last
training timestep, Lin et al. 2024); N is the number of scheduler steps:
- ``ddpm``: ancestral DDPM, as ``DDIMScheduler`` with eta = 1 (DDIM Eq. 16: eta = 1 is the DDPM posterior
  q(x_prev | x_k, x0_hat) with its fixed-small variance, on any sub-sequence of timesteps); the step noise
  is drawn per image from its seed (``per_image_noise(..., draws=N + 1)``). N evaluations.
- ``ddim``: deterministic DDIM (eta = ``method.eta``, default 0). N evaluations.
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


@register_method
class Diffusion(TimeConditioned):
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
        calls = nfe // passes_per_step(self.conditional, guidance)
        return (calls + 1) // 2 if self.cfg.sampler == "heun" else calls

    def sample(self, net: nn.Module, noise_seeds: Tensor, y: Tensor | None, nfe: int,
               guidance: float) -> Tensor:
        device, y = self.start_sampling(net, noise_seeds, y, nfe, guidance)
        steps = self.steps_for(nfe, guidance)
        c = self.cfg
        sched = make_scheduler(c.sampler, steps, c.num_train_timesteps, c.schedule, *self.betas, c.prediction)
        stochastic = c.sampler == "ddpm" or (c.sampler == "ddim" and c.eta > 0)
        noise = per_image_noise(noise_seeds, self.shape, device, draws=steps + 1 if stochastic else 1)
        x = (noise[:, 0] if stochastic else noise) * sched.init_noise_sigma
        for i, t in enumerate(sched.timesteps):
            t_rows = torch.full((x.shape[0],), float(t), device=device)
            out = guided(net, sched.scale_model_input(x, t), {"t": self._time(t_rows)}, y, guidance,
                         self.null_label)
            if c.sampler in ("ddpm", "ddim"):
                eta = 1.0 if c.sampler == "ddpm" else c.eta
                extra = {"eta": eta, "variance_noise": noise[:, i + 1]} if stochastic else {}
                x = sched.step(out, int(t), x, **extra).prev_sample
            else:
                x = sched.step(out, t, x).prev_sample
        return x

    def default_nfe(self) -> list[int]:
        if self.cfg.sampler == "heun":
            return [2 * n - 1 for n in POWERS_OF_TWO if n < 128]   # 1, 3, 7, ..., 127 evaluations
        return list(POWERS_OF_TWO)

    def check_nfe(self, nfe: int, guidance: float) -> None:
        check_guidance(self.name, self.conditional, self.cfg.label_dropout, guidance)
        p = passes_per_step(self.conditional, guidance)
        note = " (a guided step evaluates 2 rows per image)" if p == 2 else ""
        t_max = self.cfg.num_train_timesteps
        if self.cfg.sampler == "heun":
            ok = nfe >= p and nfe % p == 0 and (nfe // p) % 2 == 1 and (nfe // p + 1) // 2 <= t_max
            if not ok:
                raise NFEError(f"diffusion sampler heun evaluates the network 2N-1 times for N steps{note}: "
                               f"eval.nfe must be {p} x an odd number (e.g. {p}, {3 * p}, {7 * p}) with "
                               f"N <= {t_max}, got {nfe}")
            return
        if nfe < p or nfe % p or nfe // p > t_max:
            raise NFEError(f"diffusion sampler {self.cfg.sampler} evaluates the network once per step{note}: "
                           f"eval.nfe must be a multiple of {p} between {p} and {p * t_max}, got {nfe}")
