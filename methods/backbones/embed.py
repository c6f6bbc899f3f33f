"""Conditioning embeddings shared by the backbones."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """DiT/ADM timestep features: ``[cos(t f_k), sin(t f_k)]`` with geometric frequencies ``f_k``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ScalarEmbedder(nn.Module):
    """A scalar condition (diffusion time, flow time, CFG scale alpha) -> hidden vector."""

    def __init__(self, hidden: int, freq_dim: int = 256, scale: float = 1.0):
        super().__init__()
        self.freq_dim, self.scale = freq_dim, scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, s: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(s * self.scale, self.freq_dim).to(self.mlp[0].weight.dtype))


class ConditionEmbedder(nn.Module):
    """Sum of the embeddings of the conditions a method feeds (``t``, ``r``, ``y``, ``alpha``).

    Class ``num_classes`` is the null label used for classifier-free guidance. ``style`` (discrete
    style indices, PAPER.md section 4) is accepted and ignored: only the DiT has style tokens, and a
    method asks ``getattr(backbone, "style_shape", None)`` before drawing any.
    """

    def __init__(self, hidden: int, cond: tuple[str, ...], num_classes: int = 0):
        super().__init__()
        unknown = set(cond) - {"t", "r", "y", "alpha", "style"}
        if unknown:
            raise ValueError(f"unknown conditioning {sorted(unknown)}; valid: t, r, y, alpha, style")
        cond = tuple(k for k in cond if k != "style")
        self.cond, self.hidden = cond, hidden
        # Times in [0, 1] are stretched to the sinusoid's useful range (DiT uses integer steps).
        self.scalars = nn.ModuleDict({k: ScalarEmbedder(hidden, scale=1000.0 if k in "tr" else 1.0)
                                      for k in self.cond if k != "y"})
        self.classes = nn.Embedding(num_classes + 1, hidden) if "y" in self.cond else None

    def forward(self, cond: dict[str, Tensor], batch: int, device) -> Tensor | None:
        if not self.cond:
            return None
        missing = [k for k in self.cond if k not in cond]
        if missing:
            raise KeyError(f"backbone expects conditioning {list(self.cond)}, missing {missing}")
        out = torch.zeros(batch, self.hidden, device=device)
        for k, emb in self.scalars.items():
            out = out + emb(cond[k].to(device).expand(batch))
        if self.classes is not None:
            out = out + self.classes(cond["y"].to(device))
        return out

