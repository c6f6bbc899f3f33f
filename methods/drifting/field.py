"""The drifting field V of Algorithm 2 (Deng et al. 2026, section 3.3, Eqs. 7-12).

V(x) = sum_ij A+_i A-_j (y+_i - y-_j): attraction towards positives (data) minus repulsion from
negatives (generated samples), with a Laplace kernel k(x, y) = exp(-||x - y|| / T) (Eq. 12) normalised
by a softmax over y, over x, or both (geometric mean, the default; Table 11 ablates the others).
"""
from __future__ import annotations

import torch
from torch import Tensor

SELF_MASK = 1e6              # added to the distance of each sample to itself (Alg. 2)
KERNEL_NORMS = ("xy", "y", "none")


def pairwise_distance(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances ``[..., N, M]``.

    Low-dimensional points (the 2-D toys) use the exact difference form: the matrix-product form's
    cancellation error (~1e-4 at unit norm in fp32) is comparable to the width of the toy modes.
    """
    mode = "donot_use_mm_for_euclid_dist" if a.shape[-1] <= 8 else "use_mm_for_euclid_dist_if_necessary"
    return torch.cdist(a, b, compute_mode=mode)


def kernel_affinity(logits: Tensor, kernel_norm: str = "xy") -> Tensor:
    """Normalised kernel from logits ``-dist / T`` of shape ``[G, N, P + M]``.

    ``xy``: sqrt(softmax over y * softmax over x) (Alg. 2); ``y``: softmax over y; ``none``: raw kernel.
    """
    if kernel_norm == "xy":
        return torch.sqrt(logits.softmax(dim=-1) * logits.softmax(dim=-2))
    if kernel_norm == "y":
        return logits.softmax(dim=-1)
    if kernel_norm == "none":
        return logits.exp()
    raise ValueError(f"unknown kernel_norm '{kernel_norm}'; choose one of: {', '.join(KERNEL_NORMS)}")


def drifting_field(x: Tensor, y_pos: Tensor, y_neg: Tensor, temperature: float,
                   mask_self: bool = True, kernel_norm: str = "xy") -> Tensor:
    """Algorithm 2: the drift ``V`` of each generated sample.

    Args:
        x: generated samples ``[N, D]`` or ``[G, N, D]`` (G independent groups, e.g. classes).
        y_pos: positives ``[P, D]`` / ``[G, P, D]``.
        y_neg: negatives ``[M, D]`` / ``[G, M, D]``; with ``mask_self`` its first N rows are ``x``
            itself and each sample's distance to itself is excluded.
        temperature: T of the kernel exp(-||x - y|| / T).
    Returns:
        V with the shape of ``x``.
    """
    with torch.autocast(x.device.type, enabled=False):     # fp32 kernels under bf16 autocast
        wide = torch.promote_types(x.dtype, torch.float32)
        return _field(x.to(wide), y_pos.to(wide), y_neg.to(wide), temperature, mask_self, kernel_norm)


def _field(x: Tensor, y_pos: Tensor, y_neg: Tensor, temperature: float, mask_self: bool, kernel_norm: str) -> Tensor:
    grouped = x.dim() == 3
    if not grouped:
        x, y_pos, y_neg = x[None], y_pos[None], y_neg[None]
    n, p, m = x.shape[1], y_pos.shape[1], y_neg.shape[1]
    d_neg = pairwise_distance(x, y_neg)
    if mask_self:
        if m < n:
            raise ValueError(f"mask_self needs the {n} generated samples as the first rows of y_neg, "
                             f"which has only {m} rows")
        d_neg = d_neg + SELF_MASK * torch.eye(n, m, device=x.device, dtype=x.dtype)
    logits = torch.cat([pairwise_distance(x, y_pos), d_neg], dim=-1) / -temperature
    a_pos, a_neg = kernel_affinity(logits, kernel_norm).split([p, m], dim=-1)
    # Cross-weighting makes rowsum(W_pos) = rowsum(W_neg), so the -x terms of V+ and V- cancel.
    w_pos = a_pos * a_neg.sum(dim=-1, keepdim=True)
    w_neg = a_neg * a_pos.sum(dim=-1, keepdim=True)
    v = w_pos @ y_pos - w_neg @ y_neg
    return v if grouped else v[0]


def mmd_field(x: Tensor, y_pos: Tensor, bandwidth: float) -> Tensor:
    """The MMD gradient field of App. C.2 with a Gaussian kernel xi(x, y) = exp(-||x - y||^2 / (2 s^2)), the
    generated samples ``x [G, N, D]`` being their own negatives (PAPER.md 9.2, 12.12):

    V(x) = (1/s^2) (mean_{y+} xi(x, y+) (y+ - x) - mean_{y- != x} xi(x, y-) (y- - x)),

    i.e. -1/2 the gradient of MMD^2(q, p) with respect to each sample, up to the constant N. Unlike
    Algorithm 2 the kernel is not normalised (no softmax) and V is not rescaled."""
    n = x.shape[-2]
    if n < 2:
        raise ValueError("the MMD field needs at least 2 generated samples per group")
    s2 = float(bandwidth) ** 2

    def pull(y: Tensor, exclude_self: bool) -> Tensor:
        k = torch.exp(-pairwise_distance(x, y).pow(2) / (2 * s2))
        if exclude_self:
            k = k * (1 - torch.eye(n, device=x.device, dtype=x.dtype))
        count = y.shape[-2] - (1 if exclude_self else 0)
        return (k @ y - k.sum(-1, keepdim=True) * x) / count

    return (pull(y_pos, False) - pull(x, True)) / s2


def drift_mse(x: Tensor, v: Tensor) -> Tensor:
    """Eq. 6: mean (x - sg(x + V))^2. Its value is mean ||V||^2 / D and its gradient is -2V/D per sample
    (averaged over samples as well)."""
    return (x - (x + v).detach()).pow(2).mean()
