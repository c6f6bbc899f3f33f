"""The DiT generator's conditioning vector ``c [B, hidden]`` (PAPER.md section 4, [code] details).

``c`` is a sum of the embeddings of whatever the method feeds (``BackboneIO.cond``):

- ``y`` (long ``[B]``): class table of ``num_classes`` rows as the release's (1,000 for ImageNet), normal(0.02)
  init, plus the null class ``num_classes`` only for methods that drop labels for classifier-free
  guidance (``BackboneIO.null_class``: the baselines; drifting's CFG needs no null label).
- ``alpha`` (float ``[B]``, drifting's training-time CFG scale, PAPER.md section 3): sinusoidal
  features (256 frequencies, on the raw alpha as the release does) -> MLP -> RMSNorm -> x 0.02,
  added to the class embedding [code ``c_cfg_noise_to_cond``].
- ``t``, ``r`` (float ``[B]`` in [0, 1]): diffusion / flow / MeanFlow times, embedded as DiT's
  timestep embedder (times stretched by 1000 as DiT's integer steps) and added. Not in the drifting
  generator; they let the baselines share this backbone.
- ``style`` (long ``[B, n_style_tokens]``): random style tokens (PAPER.md section 4, StyleGAN-XL
  inspired). Token i indexes its *own* codebook of ``style_codebook`` learnable vectors (normal(0.02)
  init, the release's ``noise_embeds_i``); the ``n_style_tokens`` vectors are summed into ``c``.
  They exist only when the method asks for ``style`` *and* the model config has
  ``n_style_tokens > 0``; the method reads ``style_shape`` to know what to draw.

The time/alpha MLPs use normal(0.02) weights and zero biases, as the release's ``TimestepEmbedder``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from methods.backbones.dit_layers import RMSNorm
from methods.backbones.embed import ScalarEmbedder

CONDITIONS = ("t", "r", "y", "alpha", "style")
ALPHA_SCALE = 0.02          # [code]: cond = class_embed + 0.02 * RMSNorm(alpha embedding)


def _normal_mlp(emb: ScalarEmbedder) -> ScalarEmbedder:
    for layer in emb.mlp:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
    return emb


class DiTConditioner(nn.Module):
    def __init__(self, hidden: int, cond: tuple[str, ...], num_classes: int, n_style_tokens: int,
                 style_codebook: int, null_class: bool = False):
        super().__init__()
        unknown = sorted(set(cond) - set(CONDITIONS))
        if unknown:
            raise ValueError(f"dit: unknown conditioning {unknown}; valid: {', '.join(CONDITIONS)}")
        self.cond, self.hidden, self.rows = tuple(cond), hidden, num_classes + int(null_class)
        self.classes = None
        if "y" in cond:
            self.classes = nn.Embedding(self.rows, hidden)
            nn.init.normal_(self.classes.weight, std=0.02)
        self.alpha = self.alpha_norm = None
        if "alpha" in cond:
            self.alpha = _normal_mlp(ScalarEmbedder(hidden, freq_dim=256, scale=1.0))
            self.alpha_norm = RMSNorm(hidden)
        self.times = nn.ModuleDict({k: _normal_mlp(ScalarEmbedder(hidden, freq_dim=256, scale=1000.0))
                                    for k in ("t", "r") if k in cond})
        self.style = None
        if "style" in cond and n_style_tokens > 0:
            if style_codebook < 1:
                raise ValueError(f"model.style_codebook must be >= 1 when style tokens are on, got {style_codebook}")
            self.style = nn.Parameter(torch.empty(n_style_tokens, style_codebook, hidden))
            nn.init.normal_(self.style, std=0.02)

    @property
    def style_shape(self) -> tuple[int, int] | None:
        """(number of style tokens, codebook size) the method must draw indices for; None: no style."""
        return None if self.style is None else (self.style.shape[0], self.style.shape[1])

    def forward(self, cond: dict[str, Tensor], batch: int, device) -> Tensor:
        wanted = [k for k in self.cond if k != "style" or self.style is not None]
        missing = [k for k in wanted if k not in cond]
        if missing:
            raise KeyError(f"dit expects conditioning {wanted}, missing {missing}")
        c = torch.zeros(batch, self.hidden, device=device, dtype=next(self.parameters(), torch.empty(0)).dtype)
        if self.classes is not None:
            c = c + self.classes(self._indices("y", cond["y"], (batch,), self.rows, device))
        if self.alpha is not None:
            a = self._scalar("alpha", cond["alpha"], batch, device)
            c = c + ALPHA_SCALE * self.alpha_norm(self.alpha(a))
        for k, emb in self.times.items():
            c = c + emb(self._scalar(k, cond[k], batch, device))
        if self.style is not None:
            n, size = self.style_shape
            idx = self._indices("style", cond["style"], (batch, n), size, device)
            c = c + self.style[torch.arange(n, device=device), idx].sum(1)     # token i uses table i
        return c

    @staticmethod
    def _scalar(key: str, v: Tensor, batch: int, device) -> Tensor:
        v = torch.as_tensor(v, device=device).float()
        if v.dim() > 1 or (v.dim() == 1 and v.shape[0] not in (1, batch)):
            raise ValueError(f"dit: cond['{key}'] must be a scalar or have shape [{batch}], got {tuple(v.shape)}")
        return v.reshape(-1).expand(batch)

    @staticmethod
    def _indices(key: str, v: Tensor, shape: tuple[int, ...], size: int, device) -> Tensor:
        if v.dtype not in (torch.int64, torch.int32) or tuple(v.shape) != shape:
            raise ValueError(f"dit: cond['{key}'] must be an integer tensor of shape {list(shape)}, "
                             f"got {v.dtype} {list(v.shape)}")
        if v.device.type == "cpu" and v.numel() and (int(v.min()) < 0 or int(v.max()) >= size):
            raise ValueError(f"dit: cond['{key}'] holds indices outside [0, {size}): "
                             f"{int(v.min())}..{int(v.max())}")
        return v.to(device=device, dtype=torch.long)
