"""EDM (Karras, Aittala, Aila and Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models") as a ``Method``: the strong diffusion baseline beside the DDPM/DDIM family of ``methods.diffusion``.

Noise levels sigma, x_sigma = x + sigma n (variance exploding). The network F is preconditioned
(Table 1, "Ours" column, and Eq. 7) into the denoiser

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)),
    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),  c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
    c_in = 1 / sqrt(sigma^2 + sigma_data^2),           c_noise = ln(sigma) / 4,

trained (Eq. 2 and Table 1) on ln(sigma) ~ N(P_mean, P_std^2) with the loss weight
lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, i.e. E[lambda(sigma) ||D(x + sigma n; sigma) - x||^2]
(which is F regressed with unit weight onto its effective target, Eq. 8). The backbone sees c_noise under "t".

Sampling (Alg. 1, deterministic, S_churn = 0) on the time steps of Eq. 5,
sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, sigma_N = 0
(diffusers' ``EDMEulerScheduler`` Karras grid), from x_0 = sigma_0 n:
- ``heun``: Euler step plus the second-order correction on every step but the last (which ends at sigma = 0):
  2N - 1 evaluations.
- ``euler``: the same without the correction: N evaluations.
A guided step (CFG, ``methods.cfg``) evaluates 2 rows per image, so every count doubles.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods.base import Batch, per_image_noise
from methods.cfg import check_label_dropout, drop_labels, guided, passes_per_step
from methods.diffusion import StepSampled, steps_for
from methods.flow import bcast
from methods.registry import register_method
from methods.time_conditioned import TimeConditioned

EDM_SAMPLERS = ("heun", "euler")


def preconditioning(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(c_skip, c_out, c_in, c_noise) of Table 1 at noise levels ``sigma``."""
    s2 = sigma**2 + sigma_data**2
    return sigma_data**2 / s2, sigma * sigma_data / s2.sqrt(), 1 / s2.sqrt(), sigma.log() / 4


def loss_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2 (Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float) -> Tensor:
    """sigma_0 > ... > sigma_{N-1} of Eq. 5 and sigma_N = 0, from diffusers' ``EDMEulerScheduler``."""
    from diffusers import EDMEulerScheduler

    sched = EDMEulerScheduler(sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, sigma_schedule="karras",
                              final_sigmas_type="zero")
    sched.set_timesteps(steps)
    return sched.sigmas.double()


@register_method
class EDM(StepSampled, TimeConditioned):
    name = "edm"

    @dataclass
    class Config:
        name: str = "edm"
        sampler: str = "heun"             # heun (2N - 1 evaluations) | euler (N)
        sigma_data: float = 0.5           # data std the preconditioning assumes (paper: 0.5 for images)
        p_mean: float = -1.2              # ln(sigma) ~ N(p_mean, p_std^2) in training (paper: -1.2, 1.2)
        p_std: float = 1.2
        sigma_min: float = 0.002          # sampling grid (paper: 0.002, 80, rho = 7)
        sigma_max: float = 80.0
        rho: float = 7.0
        conditional: bool = False
        label_dropout: float = 0.1

    def __init__(self, cfg: "EDM.Config"):
        if cfg.sampler not in EDM_SAMPLERS:
            raise ValueError(f"method.sampler must be one of {list(EDM_SAMPLERS)}, got '{cfg.sampler}'")
        for key in ("sigma_data", "p_std", "sigma_min", "rho"):
            if not getattr(cfg, key) > 0:
                raise ValueError(f"method.{key} must be > 0, got {getattr(cfg, key)}")
        if not cfg.sigma_max > cfg.sigma_min:
            raise ValueError(f"method.sigma_max must exceed method.sigma_min, got {cfg.sigma_max} <= {cfg.sigma_min}")
        check_label_dropout(cfg.label_dropout)
        self.cfg, self.conditional = cfg, cfg.conditional
        self.shape: tuple[int, ...] | None = None
        self.null_label = 0

    def denoise(self, net: nn.Module, x: Tensor, sigma: Tensor, y: Tensor | None, guidance: float = 1.0) -> Tensor:
        """D(x; sigma) (Eq. 7) for ``sigma [B]``; guided (CFG) when ``y`` is given and ``guidance != 1``."""
        c_skip, c_out, c_in, c_noise = (bcast(c, x) for c in preconditioning(sigma.to(x.dtype), self.cfg.sigma_data))
        out = guided(net, c_in * x, {"t": c_noise.flatten()}, y, guidance, self.null_label)
        return c_skip * x + c_out * out.to(x.dtype)

    def loss(self, net: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        c, x = self.cfg, batch.x.float()
        sigma = (c.p_mean + c.p_std * batch.random.randn()).exp().to(x.device)
        noise = batch.randn_like_x()
        y = drop_labels(batch.y, c.label_dropout, self.null_label, batch.random) if self.conditional else None
        err = (self.denoise(net, x + bcast(sigma, x) * noise, sigma, y) - x).pow(2).flatten(1).mean(1)
        return (loss_weight(sigma, c.sigma_data) * err).mean(), {}

    def sample(self, net: nn.Module, noise_seeds: Tensor, y: Tensor | None, nfe: int,
               guidance: float) -> Tensor:
        device, y = self.start_sampling(net, noise_seeds, y, nfe, guidance)
        c = self.cfg
        steps = steps_for(nfe, passes_per_step(self.conditional, guidance), c.sampler == "heun")
        sigmas = karras_sigmas(steps, c.sigma_min, c.sigma_max, c.rho).tolist()
        x = per_image_noise(noise_seeds, self.shape, device) * sigmas[0]

        def slope(z: Tensor, s: float) -> Tensor:                  # dx/dsigma = (x - D(x; sigma)) / sigma (Eq. 3)
            return (z - self.denoise(net, z, torch.full((z.shape[0],), s, device=device), y, guidance)) / s

        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            d = slope(x, s)
            x_next = x + (s_next - s) * d
            if c.sampler == "heun" and s_next > 0:
                x_next = x + (s_next - s) * 0.5 * (d + slope(x_next, s_next))
            x = x_next
        return x

