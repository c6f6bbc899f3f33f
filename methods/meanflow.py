"""MeanFlow (Geng, Deng, Bai, Kolter and He 2025, "Mean Flows for One-step Generative Modeling") as a ``Method``.

The network models the average velocity u(z_t, r, t) = 1/(t - r) * int_r^t v(z_s, s) ds on the flow-matching
path z_t = (1 - t) x + t eps (t = 0 data, t = 1 noise; ``methods.flow``'s convention). Differentiating
(t - r) u = int_r^t v ds in t gives the MeanFlow identity (paper §3)

    u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t),   d/dt u = v . d_z u + d_t u,

whose total derivative is one Jacobian-vector product of u along the tangent (v, 0, 1) in (z, r, t).
Training regresses u_theta onto the stop-gradient target u_tgt = v - clip(t - r, 0, 1) * jvp (Alg. 1)
with forward-mode AD (``meanflow_target``), the adaptive weight 1 / (||u - u_tgt||^2 + c)^p (p = 1, c = 0.01 in the
authors' code), (t, r) from two logit-normal(-0.4, 1) draws ordered so that t >= r, and r = t on 75% of
the rows (the flow-matching limit, u = v). Following the paper's best time conditioning (its Table 1
ablations: (t, t - r)), the backbone's second time input ``r`` receives the interval h = t - r.

Sampling (Alg. 2): z_r = z_t - (t - r) u(z_t, r, t) on a uniform grid from t = 1 to 0: one network
evaluation per step, so 1-NFE is x = eps - u(eps, 0, 1). Guidance: either trained in (``method.omega``,
paper §4.2 and the authors' code: v_g = v_unc + omega (v - v_unc) with v_unc = u_theta(z_t, t, t | null),
so sampling stays 1 evaluation per step and ``eval.guidance`` must be 1), or at sampling time with a
separate null-label pass (``methods.cfg``, 2 rows per image per step).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from methods.base import Batch, NFEError, per_image_noise
from methods.cfg import check_guidance, check_label_dropout, drop_labels, guided, passes_per_step
from methods.flow import bcast, check_time_dist, draw_times
from methods.registry import register_method
from methods.time_conditioned import TimeConditioned


def meanflow_target(u_fn, z: Tensor, r: Tensor, t: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(u, u_tgt): the prediction u_fn(z, r, t) (differentiable) and the detached MeanFlow target
    v - clip(t - r, 0, 1) * (v . d_z u + d_t u), the total derivative taken with one forward-mode JVP.

    The JVP uses PyTorch's forward-mode AD with dual tensors (``torch.autograd.forward_ad``, the engine
    under ``torch.func.jvp``): ``torch.func.jvp`` through a DistributedDataParallel model fails from the
    second step on (DDP rebuilds its gradient buckets inside the functorch transform: "Cannot access
    data pointer of Tensor that doesn't have storage"), dual tensors pass through DDP unchanged. Fused
    attention kernels (flash, memory-efficient) have no forward-mode derivative, so attention runs on
    the math backend inside the JVP (the DiT backbone calls ``scaled_dot_product_attention``).

    The JVP runs in fp32 with autocast off: under bf16 autocast the tangent d/dt u, a difference of nearly
    equal quantities scaled by (t - r), keeps ~3 significant digits and the self-referential target drifts."""
    z, v, r, t = (a.float() if a.dtype in (torch.bfloat16, torch.float16) else a for a in (z, v, r, t))
    with torch.autocast(z.device.type, enabled=False), fwAD.dual_level(), sdpa_kernel(SDPBackend.MATH):
        out = u_fn(fwAD.make_dual(z, v), fwAD.make_dual(r, torch.zeros_like(r)),
                   fwAD.make_dual(t, torch.ones_like(t)))
        u, dudt = fwAD.unpack_dual(out)
    if dudt is None:                        # u does not depend on (z, t) at all
        dudt = torch.zeros_like(u)
    return u, (v - bcast((t - r).clamp(0.0, 1.0), v) * dudt).detach()


@register_method
class MeanFlow(TimeConditioned):
    SCALARS = ("t", "r")
    name = "meanflow"
    compilable = False          # dynamo does not trace forward-mode AD (dual tensors)

    @dataclass
    class Config:
        name: str = "meanflow"
        time_dist: str = "logit_normal"     # uniform | logit_normal, for both t and r
        logit_mean: float = -0.4            # MeanFlow ImageNet setting
        logit_std: float = 1.0
        equal_fraction: float = 0.75        # share of rows with r = t (paper's ablations, Table 1: 25% r != t)
        norm_p: float = 1.0                 # adaptive loss weight power p (p = 1 best in Table 1)
        norm_eps: float = 0.01              # adaptive loss weight offset c
        omega: float = 1.0                  # training-time CFG scale (paper §4.2); 1: none
        conditional: bool = False
        label_dropout: float = 0.1

    def __init__(self, cfg: "MeanFlow.Config"):
        check_time_dist(cfg.time_dist, cfg.logit_std)
        check_label_dropout(cfg.label_dropout)
        if not 0.0 <= cfg.equal_fraction <= 1.0:
            raise ValueError(f"method.equal_fraction must lie in [0, 1], got {cfg.equal_fraction}")
        if cfg.norm_p < 0 or cfg.norm_eps <= 0:
            raise ValueError(f"method.norm_p must be >= 0 and method.norm_eps > 0, got {cfg.norm_p}, {cfg.norm_eps}")
        if cfg.omega <= 0:
            raise ValueError(f"method.omega must be > 0 (1.0 = no training-time guidance), got {cfg.omega}")
        if cfg.omega != 1.0 and not (cfg.conditional and cfg.label_dropout > 0):
            raise ValueError(f"method.omega={cfg.omega} needs method.conditional=true and method.label_dropout > 0")
        self.cfg, self.conditional = cfg, cfg.conditional
        self.shape: tuple[int, ...] | None = None
        self.null_label = 0

    @staticmethod
    def _cond(r: Tensor, t: Tensor, y: Tensor | None) -> dict[str, Tensor]:
        """Backbone conditions: time t and interval h = t - r (under the key "r"), plus the label."""
        return {"t": t, "r": t - r} | ({"y": y} if y is not None else {})

    def draw_rt(self, batch: Batch) -> tuple[Tensor, Tensor]:
        c = self.cfg
        a = draw_times(batch.random, c.time_dist, c.logit_mean, c.logit_std)
        b = draw_times(batch.random, c.time_dist, c.logit_mean, c.logit_std)
        t, r = torch.maximum(a, b), torch.minimum(a, b)
        equal = batch.random.rand() < c.equal_fraction
        return torch.where(equal, t, r), t

    def loss(self, net: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        c, x = self.cfg, batch.x.float()
        r, t = (s.to(x.device) for s in self.draw_rt(batch))
        eps = batch.randn_like_x()
        z = (1 - bcast(t, x)) * x + bcast(t, x) * eps
        v = eps - x
        y = None
        if self.conditional:
            y = drop_labels(batch.y, c.label_dropout, self.null_label, batch.random)
            if c.omega != 1.0:
                with torch.no_grad():
                    v_unc = net(z, self._cond(t, t, torch.full_like(y, self.null_label))).float()
                v_g = v_unc + c.omega * (v - v_unc)
                dropped = (y == self.null_label).view(-1, *([1] * (v.dim() - 1)))
                v = torch.where(dropped, v, v_g)                          # dropped rows keep v (Alg. 1)
        u, u_tgt = meanflow_target(lambda zz, rr, tt: net(zz, self._cond(rr, tt, y)).float(), z, r, t, v)
        err = (u - u_tgt).pow(2).flatten(1).sum(1)
        loss = (err / (err.detach() + c.norm_eps).pow(c.norm_p)).mean()
        return loss, {"mse": err.detach().mean(), "v_mse": (u.detach() - (eps - x)).pow(2).flatten(1).sum(1).mean()}

    def sample(self, net: nn.Module, noise_seeds: Tensor, y: Tensor | None, nfe: int,
               guidance: float) -> Tensor:
        device, y = self.start_sampling(net, noise_seeds, y, nfe, guidance)
        z = per_image_noise(noise_seeds, self.shape, device)
        ts = torch.linspace(1.0, 0.0, nfe // passes_per_step(self.conditional, guidance) + 1).tolist()
        for t, r in zip(ts[:-1], ts[1:]):
            tt = torch.full((z.shape[0],), t, device=device)
            u = guided(net, z, {"t": tt, "r": tt - r}, y, guidance, self.null_label)
            z = z - (t - r) * u
        return z

    def default_nfe(self) -> list[int]:
        return [1, 2]

    def check_nfe(self, nfe: int, guidance: float) -> None:
        check_guidance(self.name, self.conditional, self.cfg.label_dropout, guidance)
        if self.cfg.omega != 1.0 and guidance != 1.0:
            raise NFEError(f"meanflow was trained with guidance built in (method.omega={self.cfg.omega:g}): "
                           f"eval.guidance must be [1.0], got {guidance:g}")
        p = passes_per_step(self.conditional, guidance)
        if nfe < p or nfe % p:
            note = " (a guided step evaluates 2 rows per image)" if p == 2 else ""
            raise NFEError(f"meanflow evaluates the network once per step{note}: eval.nfe must be a positive "
                           f"multiple of {p} (1 and 2 are the paper's settings), got {nfe}")
