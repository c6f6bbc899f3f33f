"""DiT generator of Drifting Models (PAPER.md section 4, Table 8), shared with the diffusion/flow baselines.

``[B, C_in, H, W] -> [B, C_out, H, W]`` (shapes from ``BackboneIO``; drifting feeds noise of the
output's shape, the baselines feed x_t). The forward pass, following the official release [code]:

1. patchify: non-overlapping ``p x p`` patches, each flattened in (row, column, channel) order as the
   release's BHWC reshape, -> ``Linear`` to ``hidden``; ``(H/p)(W/p)`` tokens (256 for every paper
   config: 32/2 and 256/16);
2. add a *learnable* absolute position embedding initialised with 2-D sin-cos [code];
3. prepend ``n_context_tokens`` in-context ("register") tokens: ``Linear(c)`` tiled, plus a learnable
   per-token embedding (normal(0.02)); they get no absolute position, only RoPE positions [code, JiT];
4. ``depth`` blocks: adaLN-zero from ``c``, RMSNorm, attention with qkv bias, QK-norm and 1-D RoPE
   over the full sequence (prefix included), SwiGLU MLP (``dit_layers``);
5. final adaLN layer (zero-initialised, so the initial output is exactly 0), drop the prefix tokens,
   unpatchify.

``c`` is the conditioning vector of ``dit_cond.DiTConditioner`` (class, alpha, style, and times for
the baselines). Design switches (``swiglu``, ``rmsnorm``, ``qk_norm``, ``use_rope``, ``learn_pos_embed``,
``n_context_tokens``, ``n_style_tokens``) let ablations turn each modernisation off; off, the model is
DiT (Peebles & Xie 2023).

Calling it from a method: ``net(x, cond)``, ``cond`` holding the keys the method put in
``BackboneIO.cond``: ``y`` (long [B]; ``num_classes`` is the null class when ``io.null_class``), ``alpha``, ``t``, ``r``
(float [B] or scalars), and ``style`` (long [B, n], uniform in [0, k), where
``(n, k) = getattr(backbone, "style_shape", None)``; None when the method did not ask for style or
the model config sets ``n_style_tokens: 0``). Draw style indices like the noise: from
``batch.random`` in training and from the per-image seeds when sampling.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from methods.backbones.dit_cond import DiTConditioner
from methods.backbones.dit_layers import DiTBlock, FinalLayer, rope_tables, sincos_2d, xavier_linear
from methods.base import BackboneIO
from methods.registry import register_backbone


@register_backbone
class DiT(nn.Module):
    name = "dit"

    @dataclass
    class Config:
        name: str = "dit"
        patch_size: int = 2
        hidden: int = 768
        depth: int = 12
        heads: int = 12
        mlp_ratio: float = 4.0
        swiglu: bool = True                 # SwiGLU MLP of width swiglu_hidden(); False: DiT's GELU MLP
        rmsnorm: bool = True                # RMSNorm everywhere; False: DiT's affine-free LayerNorm
        qk_norm: bool = True
        qkv_bias: bool = True
        use_rope: bool = True
        rope_base: float = 10000.0
        learn_pos_embed: bool = True        # [code]: learnable, sin-cos initialised; False: fixed sin-cos
        n_context_tokens: int = 16          # in-context tokens; 0 disables
        n_style_tokens: int = 32            # random style tokens; 0 disables (used when the method asks)
        style_codebook: int = 64
        attn_fp32: bool = False             # attention in fp32 under bf16 autocast [code: pixel configs]
        remat: bool = False                 # activation checkpointing per block in training [code: pixel]
        # Only for ``python -m bench.params`` without data: the paper's input [C, H, W] and classes.
        nominal_shape: list[int] | None = None
        nominal_classes: int = 0

    def __init__(self, io: BackboneIO, cfg: "DiT.Config"):
        super().__init__()
        c_in, c_out, self.grid = self._check(io, cfg)
        d, p = cfg.hidden, cfg.patch_size
        self.cfg, self.in_shape, self.out_shape = cfg, tuple(io.in_shape), tuple(io.out_shape)
        self.n_ctx = cfg.n_context_tokens

        self.cond = DiTConditioner(d, tuple(io.cond), io.num_classes, cfg.n_style_tokens, cfg.style_codebook,
                                   io.null_class)
        self.patch = xavier_linear(p * p * c_in, d)
        pos = sincos_2d(d, *self.grid)[None]
        if cfg.learn_pos_embed:
            self.pos_embed = nn.Parameter(torch.empty(1, pos.shape[1], d))
            with torch.no_grad():
                self.pos_embed.copy_(pos)
        else:
            self.register_buffer("pos_embed", pos, persistent=False)
        if self.n_ctx:
            self.ctx_proj = xavier_linear(d, d)
            self.ctx_embed = nn.Parameter(torch.empty(1, self.n_ctx, d))
            nn.init.normal_(self.ctx_embed, std=0.02)
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.heads, cfg.mlp_ratio, cfg.swiglu, cfg.rmsnorm, cfg.qk_norm,
                                             cfg.qkv_bias, cfg.attn_fp32) for _ in range(cfg.depth))
        self.final = FinalLayer(d, p * p * c_out, cfg.rmsnorm)

    @staticmethod
    def _check(io: BackboneIO, cfg: "DiT.Config") -> tuple[int, int, tuple[int, int]]:
        """(C_in, C_out, token grid); every unusable setting is a one-line ``ValueError``."""
        if len(io.in_shape) != 3 or len(io.out_shape) != 3:
            raise ValueError(f"model dit needs image data [C, H, W] in and out; got in {tuple(io.in_shape)}, "
                             f"out {tuple(io.out_shape)}")
        (c_in, h, w), (c_out, ho, wo) = io.in_shape, io.out_shape
        if (h, w) != (ho, wo):
            raise ValueError(f"model dit maps H x W to itself; got input {h}x{w} and output {ho}x{wo}")
        p = cfg.patch_size
        if p < 1 or h % p or w % p:
            raise ValueError(f"model.patch_size={p} must divide the data's height and width; got {h}x{w} "
                             f"(shape {tuple(io.out_shape)})")
        checks = [
            (cfg.hidden >= 4 and cfg.hidden % 4 == 0, f"model.hidden={cfg.hidden} must be a positive multiple of 4 "
                                                      "(2-D sin-cos position embedding)"),
            (cfg.heads >= 1 and cfg.hidden % cfg.heads == 0, f"model.heads={cfg.heads} must divide "
                                                             f"model.hidden={cfg.hidden}"),
            (cfg.depth >= 1, f"model.depth must be >= 1, got {cfg.depth}"),
            (cfg.mlp_ratio > 0, f"model.mlp_ratio must be > 0, got {cfg.mlp_ratio}"),
            (cfg.n_context_tokens >= 0 and cfg.n_style_tokens >= 0,
             f"model.n_context_tokens and model.n_style_tokens must be >= 0, got {cfg.n_context_tokens}, "
             f"{cfg.n_style_tokens}"),
            (cfg.rope_base > 0, f"model.rope_base must be > 0, got {cfg.rope_base}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        if cfg.use_rope and (cfg.hidden // cfg.heads) % 2:
            raise ValueError(f"model.use_rope needs an even head dimension; hidden/heads = "
                             f"{cfg.hidden}/{cfg.heads} = {cfg.hidden // cfg.heads}")
        return c_in, c_out, (h // p, w // p)

    @property
    def style_shape(self) -> tuple[int, int] | None:
        """(n_style_tokens, style_codebook) when the network takes ``cond['style']``, else None."""
        return self.cond.style_shape

    def patchify(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, (H/p)(W/p), p*p*C]``, tokens row-major, each patch in (row, col, C) order."""
        b, c = x.shape[:2]
        (gh, gw), p = self.grid, self.cfg.patch_size
        return x.view(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, p * p * c)

    def unpatchify(self, t: Tensor) -> Tensor:
        """Inverse of ``patchify``: ``[B, (H/p)(W/p), p*p*C] -> [B, C, H, W]``."""
        b, c = t.shape[0], self.out_shape[0]
        (gh, gw), p = self.grid, self.cfg.patch_size
        return t.view(b, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, gh * p, gw * p)

    def forward(self, x: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"dit: input of shape {tuple(x.shape[1:])} per sample, built for {self.in_shape}")
        b = x.shape[0]
        c = self.cond(cond or {}, b, x.device)
        tokens = self.patch(self.patchify(x)) + self.pos_embed
        if self.n_ctx:
            ctx = self.ctx_proj(c).unsqueeze(1) + self.ctx_embed            # Linear(c) tiled + per-token
            tokens = torch.cat([ctx.to(tokens.dtype), tokens], dim=1)
        rope = None
        if self.cfg.use_rope:
            rope = rope_tables(tokens.shape[1], self.cfg.hidden // self.cfg.heads, x.device, self.cfg.rope_base)
        for block in self.blocks:
            if self.cfg.remat and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, c, rope, use_reentrant=False)
            else:
                tokens = block(tokens, c, rope)
        out = self.final(tokens, c)[:, self.n_ctx:]
        return self.unpatchify(out)
