"""The production drifting loss (PAPER.md sections 2.4-2.7; Deng et al. 2026, App. A.6, Eqs. 18-26).

For every group g (one class at one feature location) the generated vectors ``gen[g]`` are drifted
towards the positives ``pos[g]`` and away from the targets ``[gen[g] (stop-gradient), neg[g]]``:

1. Distances from each generated vector to the targets ``[gen, neg, pos]`` (this order, as the release).
2. One distance scale S over the *whole batch* (all groups): the target-weighted mean distance (Eq. 19;
   [code]: ``sum(d * w) / (N * sum(w))``, self pairs included). Coordinates are divided by
   ``max(S / sqrt(D), 1e-3)`` so that the average distance is about sqrt(D); distances by ``max(S, 1e-3)``
   (Eq. 20: logits ``-d / (tau S)``). S is a stop-gradient constant.
3. Self pairs are masked by adding ``self_mask`` (release: 100) to the *normalised* distance.
4. Per temperature tau: affinity ``A = sqrt(softmax_row * softmax_col)`` on the joint logits (Alg. 2),
   floored as the release does (``sqrt(clip(row * col, affinity_clamp))``, i.e. every affinity is at
   least ``sqrt(affinity_clamp)`` = 1e-3), then multiplied column-wise by the target weights (the CFG
   weight w of the unconditional negatives enters here, after normalisation, not in the logits).
5. Cross-weighting: coefficient ``A_pos * rowsum(A_neg)`` on positives and ``-A_neg * rowsum(A_pos)`` on
   negatives, drift ``V = sum_j coef_j y_j - (sum_j coef_j) x`` (the ``x`` term vanishes by construction
   unless the attraction/repulsion scales differ: the anti-symmetry ablation of Table 1).
6. Drift normalisation (Eqs. 23-25): ``V / sqrt(max(mean(V^2), 1e-8))`` with the mean over the whole batch
   (groups, samples and coordinates), one lambda per temperature; the normalised drifts are summed over
   temperatures (A.6: one target per feature, not one loss per tau).
7. Loss per group (Eq. 26): ``mean((x / s - sg(x / s + sum_tau V_tau))^2)`` over samples and coordinates.

Where the paper and the official release (github.com/lambertae/drifting, ``drift_loss.py``) differ this
module follows the release: mask 100 on normalised distances (paper: 1e6 on raw ones), the affinity floor
(not in the paper), the S clamp on both S and S/sqrt(D), the joint scale over all groups, and the
coordinate rescaling by S/sqrt(D) (the paper's phi/S_j) with tau applied to S-normalised distances.

Choices of ours, documented where they deviate from a literal transcription:
- Distances are ``max(||x - y||, 1e-4)`` computed by ``torch.cdist`` (the release: ``sqrt(max(|x|^2 +
  |y|^2 - 2 x.y, 1e-8))``; the same function up to the cancellation error of the expanded form).
- Multi-process training: S and every lambda are batch-wide in the release because its jitted step sees
  the global batch. With ``all_reduce`` (a function summing a tensor over processes) the sums behind S and
  lambda are all-reduced, so N processes compute the same S and lambda as one process with the whole
  batch; without it they are per-process (an approximation with a batch N times smaller).
- Groups are processed in chunks bounded by ``max_elements`` entries of the [groups, N, targets]
  distance matrix, so memory stays bounded as classes x locations grow; results do not depend on it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from methods.drifting.field import KERNEL_NORMS, pairwise_distance

DIST_FLOOR = 1e-4            # release: sqrt(clip(squared distance, 1e-8))


@dataclass(frozen=True)
class DriftLossOptions:
    """Switches of the production loss; defaults are the official release's semantics."""

    kernel_norm: str = "xy"              # xy (release) | y | none (Table 11)
    affinity_clamp: float = 1e-6         # floor on row*col before the sqrt (release 1e-6); 0 disables
    attraction: float = 1.0              # scale of the attraction term (Table 1 ablation)
    repulsion: float = 1.0               # scale of the repulsion term; 0 = attraction only
    normalize_distance: bool = True      # feature normalisation by S (Eqs. 18-22)
    normalize_drift: bool = True         # drift normalisation by lambda (Eqs. 23-25)
    self_mask: float = 100.0             # added to the (normalised) self distance
    scale_floor: float = 1e-3            # clamp of S and of S / sqrt(D)
    drift_floor: float = 1e-8            # clamp of mean(V^2) before the sqrt
    max_elements: int = 1 << 25          # chunk bound on groups x N x targets (memory)

    def validate(self) -> None:
        if self.kernel_norm not in KERNEL_NORMS:
            raise ValueError(f"kernel_norm must be one of {list(KERNEL_NORMS)}, got '{self.kernel_norm}'")
        for name in ("affinity_clamp", "attraction", "repulsion", "self_mask", "scale_floor", "drift_floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.attraction == 0 and self.repulsion == 0:
            raise ValueError("attraction and repulsion cannot both be 0")
        if self.max_elements < 1:
            raise ValueError(f"max_elements must be >= 1, got {self.max_elements}")


def affinity(logits: Tensor, kernel_norm: str, clamp: float) -> Tensor:
    """Normalised kernel on logits ``[G, N, T]``, floored at ``sqrt(clamp)`` (release: sqrt(clip(., 1e-6)))."""
    if kernel_norm == "xy":
        prod = logits.softmax(dim=-1) * logits.softmax(dim=-2)
        return prod.clamp_min(clamp).sqrt() if clamp > 0 else prod.sqrt()
    a = logits.softmax(dim=-1) if kernel_norm == "y" else logits.exp()
    return a.clamp_min(math.sqrt(clamp)) if clamp > 0 else a


def _check(gen: Tensor, other: Tensor, w: Tensor | None, what: str) -> None:
    if other.dim() != 3 or other.shape[0] != gen.shape[0] or other.shape[2] != gen.shape[2]:
        raise ValueError(f"drift_loss: {what} must be [G={gen.shape[0]}, *, D={gen.shape[2]}], got {list(other.shape)}")
    if w is not None and tuple(w.shape) != tuple(other.shape[:2]):
        raise ValueError(f"drift_loss: weights of {what} must be {list(other.shape[:2])}, got {list(w.shape)}")


def _chunks(g: int, per_group: int, max_elements: int) -> list[slice]:
    step = max(1, max_elements // max(1, per_group))
    return [slice(i, min(i + step, g)) for i in range(0, g, step)]


def drift_loss(gen: Tensor, pos: Tensor, neg: Tensor | None = None, w_gen: Tensor | None = None,
               w_pos: Tensor | None = None, w_neg: Tensor | None = None,
               temperatures: tuple[float, ...] = (0.02, 0.05, 0.2), opts: DriftLossOptions | None = None,
               all_reduce: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Production drifting loss per group.

    Args:
        gen: generated vectors ``[G, N, D]`` (gradients flow through them only).
        pos: positives ``[G, P, D]``; neg: extra negatives ``[G, M, D]`` (e.g. unconditional real samples).
        w_gen, w_pos, w_neg: target weights ``[G, N]``, ``[G, P]``, ``[G, M]`` (default 1).
        temperatures: the taus whose normalised drifts are summed.
        opts: switches (``DriftLossOptions``); all_reduce: sums a tensor over processes (see module doc).
    Returns:
        ``loss [G]`` and ``info``: ``scale`` (S) and, per tau, ``drift_sq/{tau}`` (un-normalised mean-square
        drift per coordinate, the release's ``loss_{tau}``), ``attract_sq/{tau}`` and ``repel_sq/{tau}`` (the
        same for the attraction and repulsion terms alone); all detached scalars.
    """
    opts = opts or DriftLossOptions()
    opts.validate()
    if gen.dim() != 3:
        raise ValueError(f"drift_loss: gen must be [G, N, D], got {list(gen.shape)}")
    if not temperatures or min(temperatures) <= 0:
        raise ValueError(f"drift_loss: temperatures must be a non-empty list of values > 0, got {temperatures}")
    if len({f"{t:g}" for t in temperatures}) != len(temperatures):
        raise ValueError(f"drift_loss: temperatures must be distinct, got {temperatures}")
    dtype = torch.promote_types(gen.dtype, torch.float32)
    g, n, d = gen.shape
    if neg is None:
        neg = gen.new_zeros(g, 0, d)
    _check(gen, pos, w_pos, "pos")
    _check(gen, neg, w_neg, "neg")
    if w_gen is not None and tuple(w_gen.shape) != (g, n):
        raise ValueError(f"drift_loss: w_gen must be [{g}, {n}], got {list(w_gen.shape)}")
    ones = lambda t: torch.ones(t.shape[:2], device=gen.device, dtype=dtype)  # noqa: E731
    with torch.no_grad():
        x = gen.detach().to(dtype)
        targets = torch.cat([x, neg.to(dtype), pos.to(dtype)], dim=1)
        weights = torch.cat([ones(gen) if w_gen is None else w_gen.to(dtype),
                             ones(neg) if w_neg is None else w_neg.to(dtype),
                             ones(pos) if w_pos is None else w_pos.to(dtype)], dim=1)
        goal, inv_scale, info = _goal(x, targets, weights, n + neg.shape[1], temperatures, opts, all_reduce)
    diff = gen.to(dtype) * inv_scale - goal
    return diff.pow(2).mean(dim=(1, 2)), info


def _distances(x: Tensor, targets: Tensor) -> Tensor:
    return pairwise_distance(x, targets).clamp_min(DIST_FLOOR)


def _goal(x: Tensor, targets: Tensor, weights: Tensor, n_neg: int, temperatures, opts: DriftLossOptions,
          all_reduce) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """The stop-gradient goal in scaled coordinates, 1/s, and the diagnostics."""
    g, n, d = x.shape
    n_t = targets.shape[1]
    chunks = _chunks(g, n * n_t, opts.max_elements)
    reduce = all_reduce or (lambda t: t)
    cached = _distances(x, targets) if len(chunks) == 1 else None

    # Distance scale S over all groups (and processes): sum(d * w) / (N * sum(w)).
    if opts.normalize_distance:
        num = x.new_zeros(())
        for sl in chunks:
            dist = cached if cached is not None else _distances(x[sl], targets[sl])
            num = num + (dist * weights[sl, None, :]).sum()
        sums = reduce(torch.stack([num, weights.sum()]))
        scale = sums[0] / (n * sums[1]).clamp_min(torch.finfo(x.dtype).tiny)
        coord_scale = (scale / math.sqrt(d)).clamp_min(opts.scale_floor)
        dist_scale = scale.clamp_min(opts.scale_floor)
    else:
        scale = coord_scale = dist_scale = x.new_ones(())
    xs, ts = x / coord_scale, targets / coord_scale
    eye = torch.eye(n, n_t, device=x.device, dtype=x.dtype) * opts.self_mask

    n_tau = len(temperatures)
    forces = [torch.empty_like(x) for _ in temperatures]
    sums = x.new_zeros(3 * n_tau)            # per tau: sum V^2, sum V+^2, sum V-^2
    for sl in chunks:
        dist = cached if cached is not None else _distances(x[sl], targets[sl])
        dist_n = dist / dist_scale + eye
        w = weights[sl, None, :]
        for k, tau in enumerate(temperatures):
            a = affinity(-dist_n / tau, opts.kernel_norm, opts.affinity_clamp) * w
            a_neg, a_pos = a[..., :n_neg], a[..., n_neg:]
            coef_pos = a_pos * a_neg.sum(-1, keepdim=True) * opts.attraction
            coef_neg = a_neg * a_pos.sum(-1, keepdim=True) * -opts.repulsion
            coef = torch.cat([coef_neg, coef_pos], dim=-1)
            f = coef @ ts[sl] - coef.sum(-1, keepdim=True) * xs[sl]
            attract = coef_pos @ ts[sl, n_neg:] - coef_pos.sum(-1, keepdim=True) * xs[sl]
            forces[k][sl] = f
            sums[3 * k] += f.pow(2).sum()
            sums[3 * k + 1] += attract.pow(2).sum()
            sums[3 * k + 2] += (f - attract).pow(2).sum()
    count = x.new_tensor([float(g * n * d)])
    sums = reduce(torch.cat([sums, count]))
    mean_sq = sums[:-1] / sums[-1]
    info: dict[str, Tensor] = {"scale": scale.detach()}
    drift = torch.zeros_like(x)
    for k, tau in enumerate(temperatures):
        ms = mean_sq[3 * k]
        info[f"drift_sq/{tau:g}"] = ms
        info[f"attract_sq/{tau:g}"] = mean_sq[3 * k + 1]
        info[f"repel_sq/{tau:g}"] = mean_sq[3 * k + 2]
        drift = drift + (forces[k] / ms.clamp_min(opts.drift_floor).sqrt() if opts.normalize_drift else forces[k])
    return xs + drift, 1.0 / coord_scale, info
