"""Layers of the drifting generator (PAPER.md section 4): a DiT with LightningDiT modernisations.

Every choice follows the official JAX release (``models/generator.py`` of lambertae/drifting, tagged
[code] in PAPER.md) unless noted:

- RMSNorm with a learnable scale, statistics in fp32 (``RMSNorm``, eps 1e-6);
- the bf16 fast path (autocast): q, k and v stay bf16 from the qkv projection to SDPA (flash attention
  takes them as they are): QK-norm uses the fused RMSNorm kernel on the bf16 input, whose statistics are
  fp32 inside, and RoPE rotates in bf16; fp32 inputs (and ``attn_fp32``) keep everything in fp32;
- QK-norm: RMSNorm over the head dimension of q and k, before RoPE;
- RoPE in the "rotate half" layout, 1-D over the *full* sequence index, prefix tokens included;
- SwiGLU with hidden width ``swiglu_hidden(d, mlp_ratio)`` (2048 for d=768, 2752 for d=1024);
- adaLN-zero (DiT, Peebles & Xie 2023): 6 modulations per block and 2 for the final layer, all from
  one zero-initialised ``Linear`` after SiLU, so every residual branch and the output start at 0;
- every other ``Linear``: Xavier-uniform weight and zero bias (the release's ``TorchLinear``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOW_PRECISION = (torch.bfloat16, torch.float16)


def swiglu_hidden(hidden: int, mlp_ratio: float) -> int:
    """SwiGLU width: 2/3 of the plain MLP width, rounded up to a multiple of 32 [code].

    Integer arithmetic as in the release (``int(2/3 * int(d * ratio))``), so floating-point rounding
    cannot add 32: 2048 for d=768 and 2752 for d=1024 at ratio 4 (PAPER.md section 4).
    """
    return (int(2 * int(hidden * mlp_ratio) / 3) + 31) // 32 * 32


def xavier_linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    """``Linear`` with the release's default init: Xavier-uniform weight, zero bias."""
    layer = nn.Linear(d_in, d_out, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def zero_linear(d_in: int, d_out: int) -> nn.Linear:
    """``Linear`` with zero weight and bias: adaLN-zero modulation and the output layer [code]."""
    layer = nn.Linear(d_in, d_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight`` with the statistics in fp32 (the release's RMSNorm)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in LOW_PRECISION:    # fused kernel, fp32 statistics inside, no fp32 copy of x
            return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)
        wide = torch.promote_types(x.dtype, torch.float32)
        return F.rms_norm(x.to(wide), (x.shape[-1],), self.weight.to(wide), self.eps).to(x.dtype)


def token_norm(dim: int, rms: bool) -> nn.Module:
    """Pre-norm of a block: RMSNorm (LightningDiT) or DiT's LayerNorm without affine parameters."""
    return RMSNorm(dim) if rms else nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def sincos_1d(dim: int, pos: Tensor) -> Tensor:
    """``[sin(pos w_k), cos(pos w_k)]`` with ``w_k = 10000^(-k/(dim/2))`` (MAE/DiT layout)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2))
    out = pos.double().reshape(-1)[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> Tensor:
    """2-D sin-cos position embedding ``[grid_h * grid_w, dim]``, tokens in row-major order.

    Same layout as the release's ``get_2d_sincos_pos_embed`` (first half of the channels encodes the
    column, second half the row), generalised to rectangular grids. ``dim`` must be divisible by 4.
    """
    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64),
                                torch.arange(grid_w, dtype=torch.float64), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1).float()


def rope_tables(n_tokens: int, head_dim: int, device, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin tables ``[n_tokens, head_dim]`` of 1-D RoPE over positions ``0..n_tokens-1`` [code].

    Frequencies ``base^(-k/(head_dim/2))`` for ``k < head_dim/2``, repeated for both halves ("rotate
    half" layout, as the release's ``apply_rope``). Positions count every token of the sequence,
    the in-context prefix included.
    """
    half = head_dim // 2
    freqs = 1.0 / base ** (torch.arange(half, dtype=torch.float32, device=device) / half)
    angles = torch.outer(torch.arange(n_tokens, dtype=torch.float32, device=device), freqs)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x [B, heads, N, head_dim]``: ``x cos + rotate_half(x) sin``, in fp32 for fp32 inputs and
    in the input's precision for bf16/fp16 ones (the fast path: no fp32 copy of q and k)."""
    half = x.shape[-1] // 2
    xf = x if x.dtype in LOW_PRECISION else x.to(torch.promote_types(x.dtype, torch.float32))
    cos, sin = cos.to(xf.dtype), sin.to(xf.dtype)
    rotated = torch.cat([-xf[..., half:], xf[..., :half]], dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention: qkv (bias on [code]) -> QK-norm -> RoPE -> SDPA -> projection."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool, qk_norm: bool, rms: bool, fp32: bool = False):
        super().__init__()
        self.heads, self.head_dim, self.fp32 = heads, dim // heads, fp32
        self.qkv = xavier_linear(dim, 3 * dim, bias=qkv_bias)
        if qk_norm:   # the release: RMSNorm when use_rmsnorm, else LayerNorm with affine parameters
            self.q_norm = RMSNorm(self.head_dim) if rms else nn.LayerNorm(self.head_dim, eps=1e-6)
            self.k_norm = RMSNorm(self.head_dim) if rms else nn.LayerNorm(self.head_dim, eps=1e-6)
        else:
            self.q_norm = self.k_norm = nn.Identity()
        self.proj = xavier_linear(dim, dim)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        dtype = v.dtype
        if self.fp32:   # [code] attn_fp32 (pixel configs): QK-norm, RoPE and attention in fp32 under autocast
            q, k, v = q.float(), k.float(), v.float()
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope).to(v.dtype), apply_rope(k, *rope).to(v.dtype)
        if self.fp32:
            with torch.autocast(x.device.type, enabled=False):
                out = F.scaled_dot_product_attention(q, k, v).to(dtype)
        else:
            out = F.scaled_dot_product_attention(q, k, v)      # scale head_dim^-0.5, as the release
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class SwiGLU(nn.Module):
    """``w2(silu(w1 x) * w3 x)`` with biases on all three projections [code]."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1, self.w3, self.w2 = xavier_linear(dim, hidden), xavier_linear(dim, hidden), xavier_linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class GeluMLP(nn.Module):
    """DiT's original MLP (``swiglu: false``): ``fc2(gelu(fc1 x))`` with width ``dim * mlp_ratio``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = xavier_linear(dim, hidden), xavier_linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: ``x (1 + scale) + shift``, broadcast over tokens."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-zero: ``x += gate * branch(modulate(norm(x)))`` twice."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, swiglu: bool, rms: bool, qk_norm: bool,
                 qkv_bias: bool, attn_fp32: bool = False):
        super().__init__()
        self.norm1, self.norm2 = token_norm(dim, rms), token_norm(dim, rms)
        self.attn = Attention(dim, heads, qkv_bias, qk_norm, rms, attn_fp32)
        self.mlp = SwiGLU(dim, swiglu_hidden(dim, mlp_ratio)) if swiglu else GeluMLP(dim, int(dim * mlp_ratio))
        self.ada = nn.Sequential(nn.SiLU(), zero_linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1), rope)
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """Norm, adaLN shift/scale, and a zero-initialised projection to ``patch^2 * C_out`` per token."""

    def __init__(self, dim: int, out_per_token: int, rms: bool):
        super().__init__()
        self.norm = token_norm(dim, rms)
        self.ada = nn.Sequential(nn.SiLU(), zero_linear(dim, 2 * dim))
        self.linear = zero_linear(dim, out_per_token)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))

