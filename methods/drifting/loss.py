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

Ablation switches (not in the release, defined here): ``attraction``/``repulsion`` scale the two
cross-weighted terms, ``V = a V+ - r V-`` (Table 1; with drift normalisation only the ratio a/r matters,
``repulsion: 0`` is attraction only); ``kernel_norm`` ``y`` (row softmax) and ``none`` (raw kernel
``exp(-d / tau)``) of Table 11, floored at ``sqrt(affinity_clamp)`` like the default.

Measured caveat of the affinity floor (``python -m bench.claims.drifting_toys clamp``): on 2-D data most
pairs are far apart, their true affinities vanish and the floor (1e-3 for each of hundreds of targets)
outweighs them, so the field becomes a pull towards the mean of the positives; ring8 and grid25 collapse
to the centre with it, at group size 64 as with the whole batch, and train normally with
``affinity_clamp=0``. In the release's high-dimensional feature spaces typical affinities are ~1e-2.

Choices of ours, documented where they deviate from a literal transcription:
- Distances are ``max(||x - y||, 1e-4)`` computed by ``torch.cdist`` (the release: ``sqrt(max(|x|^2 +
  |y|^2 - 2 x.y, 1e-8))``; the same function up to the cancellation error of the expanded form).
- Multi-process training: S and every lambda are batch-wide in the release because its jitted step sees
  the global batch. With ``all_reduce`` (a function summing a tensor over processes) the sums behind S and
  lambda are all-reduced, so N processes compute the same S and lambda as one process with the whole
  batch; without it they are per-process (an approximation with a batch N times smaller).
- ``xy`` is computed as ``exp(l - lse_row / 2 - lse_col / 2)``, the same number as
  ``sqrt(softmax_row * softmax_col)`` with fewer passes over memory.
- Under bf16 autocast (the training fast path) every distance, softmax and matrix product here still runs
  in fp32: autocast is switched off inside, as bf16 logits -d / (0.02 S) lose the small affinities.
- ``segments`` lets several feature keys of equal width share one call, each with its own S and lambdas
  (the same numbers as separate calls; ``features.py`` uses it to cut per-call overhead).
- Groups are processed in chunks bounded by ``max_elements`` entries of the [groups, N, targets]
  distance matrix, so memory stays bounded as classes x locations grow; results do not depend on it
  (default: 2^22 entries on CPUs, where cache-sized blocks are also faster, 2^26 on GPUs).
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
    max_elements: int | None = None      # chunk bound on groups x N x targets; None: 2^22 CPU, 2^26 CUDA

    def validate(self) -> None:
        if self.kernel_norm not in KERNEL_NORMS:
            raise ValueError(f"kernel_norm must be one of {list(KERNEL_NORMS)}, got '{self.kernel_norm}'")
        for name in ("affinity_clamp", "attraction", "repulsion", "self_mask", "scale_floor", "drift_floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.attraction == 0 and self.repulsion == 0:
            raise ValueError("attraction and repulsion cannot both be 0")
        if self.max_elements is not None and self.max_elements < 1:
            raise ValueError(f"max_elements must be >= 1, got {self.max_elements}")


def _check(gen: Tensor, other: Tensor, w: Tensor | None, what: str) -> None:
    if other.dim() != 3 or other.shape[0] != gen.shape[0] or other.shape[2] != gen.shape[2]:
        raise ValueError(f"drift_loss: {what} must be [G={gen.shape[0]}, *, D={gen.shape[2]}], got {list(other.shape)}")
    if w is not None and tuple(w.shape) != tuple(other.shape[:2]):
        raise ValueError(f"drift_loss: weights of {what} must be {list(other.shape[:2])}, got {list(w.shape)}")


def _chunks(g: int, per_group: int, max_elements: int | None, device: torch.device) -> list[slice]:
    if max_elements is None:       # cache-sized blocks on CPUs; few large launches on GPUs
        max_elements = 1 << (26 if device.type == "cuda" else 22)
    step = max(1, max_elements // max(1, per_group))
    return [slice(i, min(i + step, g)) for i in range(0, g, step)]


def drift_loss(gen: Tensor, pos: Tensor, neg: Tensor | None = None, w_gen: Tensor | None = None,
               w_pos: Tensor | None = None, w_neg: Tensor | None = None,
               temperatures: tuple[float, ...] = (0.02, 0.05, 0.2), opts: DriftLossOptions | None = None,
               all_reduce: Callable[[Tensor], Tensor] | None = None,
               segments: Tensor | None = None, num_segments: int = 1) -> tuple[Tensor, dict[str, Tensor]]:
    """Production drifting loss per group.

    Args:
        gen: generated vectors ``[G, N, D]`` (gradients flow through them only).
        pos: positives ``[G, P, D]``; neg: extra negatives ``[G, M, D]`` (e.g. unconditional real samples).
        w_gen, w_pos, w_neg: target weights ``[G, N]``, ``[G, P]``, ``[G, M]`` (default 1).
        temperatures: the taus whose normalised drifts are summed.
        opts: switches (``DriftLossOptions``); all_reduce: sums a tensor over processes (see module doc).
        segments: optional ``[G]`` index in ``[0, num_segments)``: groups of different segments get their own
            S and lambdas, exactly as separate calls would (several feature keys of equal D in one call).
    Returns:
        ``loss [G]`` and ``info``: ``scale`` (S) and, per tau, ``drift_sq/{tau}`` (un-normalised mean-square
        drift per coordinate, the release's ``loss_{tau}``), ``attract_sq/{tau}`` and ``repel_sq/{tau}`` (the
        same for the attraction and repulsion terms alone); detached scalars, or ``[num_segments]`` tensors
        when ``segments`` is given.
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
    if pos.shape[1] < 1:
        raise ValueError("drift_loss: pos must hold at least one positive per group")
    if segments is None:
        seg = torch.zeros(g, dtype=torch.long, device=gen.device)
    else:   # checked where it was made: on the CPU that costs no device sync
        if tuple(segments.shape) != (g,) or (g and (int(segments.min()) < 0 or int(segments.max()) >= num_segments)):
            raise ValueError(f"drift_loss: segments must be [G={g}] indices in [0, {num_segments})")
        seg = segments.to(gen.device, non_blocking=True)
    with torch.no_grad(), torch.autocast(gen.device.type, enabled=False):   # fp32 under bf16 autocast
        x = gen.detach().to(dtype)
        neg_t = torch.cat([x, neg.to(dtype)], dim=1)                       # negatives: [gen (sg), neg]
        w_neg_t = None
        if w_gen is not None or w_neg is not None:
            w_neg_t = torch.cat([torch.ones(g, n, dtype=dtype, device=x.device) if w_gen is None else w_gen.to(dtype),
                                 torch.ones(neg.shape[:2], dtype=dtype, device=x.device) if w_neg is None
                                 else w_neg.to(dtype)], dim=1)
        w_pos_t = None if w_pos is None else w_pos.to(dtype)
        goal, inv_scale, info = _goal(x, neg_t, pos.to(dtype), w_neg_t, w_pos_t, temperatures, opts, all_reduce,
                                      seg, num_segments)
    diff = gen.to(dtype) * inv_scale - goal
    if segments is None:
        info = {k: v[0] for k, v in info.items()}
    return diff.pow(2).mean(dim=(1, 2)), info


def _distances(x: Tensor, targets: Tensor) -> Tensor:
    return pairwise_distance(x, targets).clamp_min(DIST_FLOOR)


def _group_weighted_sum(dist: Tensor, w: Tensor | None) -> Tensor:
    """``[G]``: sum_{i,j} dist[g,i,j] w[g,j] (w None: all ones), without a [G, N, T] temporary."""
    col = dist.sum(dim=1)
    return (col if w is None else col * w).sum(-1)


def _logsumexp(x: Tensor, dim: int) -> Tensor:
    """logsumexp for finite inputs (no infinity handling: logits here are finite)."""
    m = x.amax(dim, keepdim=True)
    return (x - m).exp_().sum(dim, keepdim=True).log_().add_(m)


def _normalised_affinities(l_neg: Tensor, l_pos: Tensor, kernel_norm: str, clamp: float) -> None:
    """In place: logits of the negative and positive columns -> affinities of the joint kernel.

    ``xy``: sqrt(softmax_row * softmax_col) = exp(l - lse_row / 2 - lse_col / 2), the row softmax over
    the concatenated columns [negatives | positives] (Alg. 2), the column softmax over generated samples.
    """
    if kernel_norm in ("xy", "y"):
        m = torch.maximum(l_neg.amax(-1, keepdim=True), l_pos.amax(-1, keepdim=True))
        row = ((l_neg - m).exp_().sum(-1, keepdim=True) + (l_pos - m).exp_().sum(-1, keepdim=True)).log_().add_(m)
        for lg in (l_neg, l_pos):
            if kernel_norm == "xy":
                col = _logsumexp(lg, -2)
                lg.sub_(row * 0.5).sub_(col * 0.5)
            else:
                lg.sub_(row)
    for lg in (l_neg, l_pos):
        lg.exp_()
        if clamp > 0:
            lg.clamp_min_(math.sqrt(clamp))


def _segment_sum(values: Tensor, seg: Tensor, k: int) -> Tensor:
    """``[..., G]`` -> ``[..., k]`` sums over the groups of each segment."""
    out = values.new_zeros(*values.shape[:-1], k)
    return out.index_add_(-1, seg, values)


def _goal(x: Tensor, neg: Tensor, pos: Tensor, w_neg: Tensor | None, w_pos: Tensor | None, temperatures,
          opts: DriftLossOptions, all_reduce, seg: Tensor, k: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """The stop-gradient goal in scaled coordinates, 1/s per group ``[G, 1, 1]``, and ``[k]`` diagnostics.

    ``neg`` = [gen, extra negatives] (self pairs on its leading diagonal), ``pos``: positives; weights None
    mean all ones. Every sum behind S and lambda is per segment (and all-reduced over processes).
    """
    g, n, d = x.shape
    chunks = _chunks(g, n * (neg.shape[1] + pos.shape[1]), opts.max_elements, x.device)
    reduce = all_reduce or (lambda t: t)
    cache = {}

    def dists(i: int, sl: slice) -> tuple[Tensor, Tensor]:
        if i in cache:
            return cache.pop(i)
        return _distances(x[sl], neg[sl]), _distances(x[sl], pos[sl])

    # Distance scale S per segment over all its groups (and processes): sum(d * w) / (N * sum(w)).
    if opts.normalize_distance:
        num = x.new_zeros(g)
        for i, sl in enumerate(chunks):
            dn, dp = dists(i, sl)
            if len(chunks) == 1:
                cache[i] = (dn, dp)
            num[sl] = _group_weighted_sum(dn, None if w_neg is None else w_neg[sl]) \
                + _group_weighted_sum(dp, None if w_pos is None else w_pos[sl])
        den = (w_neg.sum(-1) if w_neg is not None else x.new_full((g,), float(neg.shape[1]))) \
            + (w_pos.sum(-1) if w_pos is not None else x.new_full((g,), float(pos.shape[1])))
        sums = reduce(_segment_sum(torch.stack([num, den]), seg, k))
        scale = sums[0] / (n * sums[1]).clamp_min(torch.finfo(x.dtype).tiny)
        coord_scale = (scale / math.sqrt(d)).clamp_min(opts.scale_floor)[seg, None, None]
        dist_scale = scale.clamp_min(opts.scale_floor)[seg, None, None]
    else:
        scale = x.new_ones(k)
        coord_scale = dist_scale = x.new_ones(g, 1, 1)
    xs, neg_s, pos_s = x / coord_scale, neg / coord_scale, pos / coord_scale
    eye = torch.eye(n, neg.shape[1], device=x.device, dtype=x.dtype) * opts.self_mask

    n_tau = len(temperatures)
    forces = [torch.empty_like(x) for _ in temperatures]
    sq = x.new_zeros(3 * n_tau, g)           # per tau: sum V^2, sum V+^2, sum V-^2 of each group
    for i, sl in enumerate(chunks):
        dn, dp = dists(i, sl)
        dn = dn.div_(dist_scale[sl]).add_(eye)
        dp = dp.div_(dist_scale[sl])
        for t, tau in enumerate(temperatures):
            a_neg, a_pos = dn * (-1.0 / tau), dp * (-1.0 / tau)
            _normalised_affinities(a_neg, a_pos, opts.kernel_norm, opts.affinity_clamp)
            if w_neg is not None:
                a_neg.mul_(w_neg[sl, None, :])
            if w_pos is not None:
                a_pos.mul_(w_pos[sl, None, :])
            s_neg, s_pos = a_neg.sum(-1, keepdim=True), a_pos.sum(-1, keepdim=True)
            # Cross-weighting: coefficients A_pos * rowsum(A_neg) and -A_neg * rowsum(A_pos) (Alg. 2).
            attract = torch.baddbmm(s_pos * xs[sl], a_pos, pos_s[sl], beta=-1).mul_(s_neg * opts.attraction)
            repel = torch.baddbmm(s_neg * xs[sl], a_neg, neg_s[sl], beta=-1).mul_(s_pos * opts.repulsion)
            f = attract - repel
            forces[t][sl] = f
            sq[3 * t, sl] = f.pow(2).sum((1, 2))
            sq[3 * t + 1, sl] = attract.pow(2).sum((1, 2))
            sq[3 * t + 2, sl] = repel.pow(2).sum((1, 2))
    count = x.new_full((1, g), float(n * d))
    sums = reduce(_segment_sum(torch.cat([sq, count]), seg, k))
    mean_sq = sums[:-1] / sums[-1:].clamp_min(1.0)
    info: dict[str, Tensor] = {"scale": scale.detach()}
    drift = torch.zeros_like(x)
    for t, tau in enumerate(temperatures):
        ms = mean_sq[3 * t]
        info[f"drift_sq/{tau:g}"] = ms
        info[f"attract_sq/{tau:g}"] = mean_sq[3 * t + 1]
        info[f"repel_sq/{tau:g}"] = mean_sq[3 * t + 2]
        if opts.normalize_drift:
            drift += forces[t] / ms.clamp_min(opts.drift_floor).sqrt()[seg, None, None]
        else:
            drift += forces[t]
    return xs + drift, 1.0 / coord_scale, info
