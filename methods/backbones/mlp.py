"""MLP backbone for 2-D toys: the official drifting notebook's generator (3 hidden layers of 256, SiLU)
with optional conditioning for the baselines (time) and for guidance (class, alpha)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from methods.backbones.embed import ConditionEmbedder
from methods.base import BackboneIO
from methods.registry import register_backbone


@register_backbone
class MLP(nn.Module):
    name = "mlp"

    @dataclass
    class Config:
        name: str = "mlp"
        hidden: int = 256
        depth: int = 3              # hidden layers

    def __init__(self, io: BackboneIO, cfg: "MLP.Config"):
        super().__init__()
        if cfg.depth < 1 or cfg.hidden < 1:
            raise ValueError(f"mlp needs depth >= 1 and hidden >= 1, got depth={cfg.depth} hidden={cfg.hidden}")
        self.in_shape, self.out_shape = io.in_shape, io.out_shape
        d_in, d_out = math.prod(io.in_shape), math.prod(io.out_shape)
        self.inp = nn.Linear(d_in, cfg.hidden)
        self.cond = ConditionEmbedder(cfg.hidden, io.cond, io.num_classes)
        layers: list[nn.Module] = []
        for _ in range(cfg.depth - 1):
            layers += [nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden)]
        self.body = nn.Sequential(*layers, nn.SiLU())
        self.out = nn.Linear(cfg.hidden, d_out)

    def forward(self, x: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        h = self.inp(x.flatten(1))
        c = self.cond(cond or {}, x.shape[0], x.device)
        if c is not None:
            h = h + c
        return self.out(self.body(h)).view(x.shape[0], *self.out_shape)
