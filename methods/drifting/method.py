"""Drifting as a ``Method``: a one-step generator f(eps) trained with Algorithm 1.

Each training step generates as many samples as there are real samples in the batch, splits both into
groups of ``group_size`` (the whole local batch by default), and regresses every generated sample onto
its drifted, stop-gradient target x + V (Eq. 6), with the generated group as its own negatives.
Sampling is one forward pass: NFE = 1 by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods.base import BackboneIO, Batch, DataSpec, NFEError, per_image_noise
from methods.drifting.field import KERNEL_NORMS, drift_mse, drifting_field
from methods.registry import register_method


@register_method
class Drifting:
    name = "drifting"

    @dataclass
    class Config:
        name: str = "drifting"
        noise_dim: int = 32                 # generator input size (official toy notebook: 32)
        temperature: float = 0.05           # kernel temperature T (notebook: 0.05)
        kernel_norm: str = "xy"             # xy | y | none (Table 11)
        group_size: int | None = None       # generated = positives per group; None: the local batch

    def __init__(self, cfg: "Drifting.Config"):
        if cfg.kernel_norm not in KERNEL_NORMS:
            raise ValueError(f"method.kernel_norm must be one of {list(KERNEL_NORMS)}, got '{cfg.kernel_norm}'")
        if cfg.temperature <= 0:
            raise ValueError(f"method.temperature must be > 0, got {cfg.temperature}")
        if cfg.noise_dim < 1:
            raise ValueError(f"method.noise_dim must be >= 1, got {cfg.noise_dim}")
        self.cfg = cfg
        self.conditional = False

    def backbone_io(self, spec: DataSpec) -> BackboneIO:
        return BackboneIO(in_shape=(self.cfg.noise_dim,), out_shape=spec.shape)

    def build(self, backbone: nn.Module, spec: DataSpec) -> nn.Module:
        return backbone

    def check_batch(self, local_batch: int) -> None:
        g = self.cfg.group_size
        if g is not None and (g < 2 or local_batch % g):
            raise ValueError(f"method.group_size={g} must be >= 2 and divide the per-process batch "
                             f"{local_batch}")

    def loss(self, net: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        pos = batch.x.flatten(1)
        b, d = pos.shape
        g = self.cfg.group_size or b
        self.check_batch(b)
        gen = net(batch.random.randn(self.cfg.noise_dim)).flatten(1).float()
        gen, pos = gen.view(b // g, g, d), pos.view(b // g, g, d).float()
        with torch.no_grad():
            v = drifting_field(gen.detach(), pos, gen.detach(), self.cfg.temperature,
                               kernel_norm=self.cfg.kernel_norm)
        return drift_mse(gen, v), {"drift_sq": v.pow(2).sum(-1).mean().item()}

    def sample(self, net: nn.Module, noise_seeds: Tensor, y: Tensor | None, nfe: int,
               guidance: float) -> Tensor:
        self.check_nfe(nfe, guidance)
        device = next(net.parameters()).device
        return net(per_image_noise(noise_seeds, (self.cfg.noise_dim,), device))

    def default_nfe(self) -> list[int]:
        return [1]

    def check_nfe(self, nfe: int, guidance: float) -> None:
        if nfe != 1:
            raise NFEError(f"drifting generates in one network evaluation: eval.nfe must be [1], got {nfe}")
        if guidance != 1.0:
            raise NFEError(f"this drifting model has no guidance input: eval.guidance must be [1.0], "
                           f"got {guidance}")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
