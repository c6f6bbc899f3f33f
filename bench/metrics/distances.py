"""Distances between two sample sets of points (the 2-D toys), exact where the name promises it.

- ``w2``: exact 2-Wasserstein distance between the empirical measures of two equal-size sets,
  W2 = sqrt(min over permutations s of 1/n sum_i ||x_i - y_s(i)||^2), by solving the assignment problem:
  up to ``DENSE_W2_MAX`` points with scipy's dense ``linear_sum_assignment``, above with the sparse
  multiscale primal-dual solver of ``bench.metrics.assignment``, whose optimality is certified by dual
  potentials checked on all n^2 pairs (no n x n matrix; the same value as the dense solver, to the last
  digit, at n = 10,000 on grid25). Measured on 2 CPU cores (``python -m bench.perf.metrics w2``): 0.6-1.2 s at
  n = 2,500 (dense: 1.7-34 s) and 4-6 s at n = 10,000 per W2 value (dense: 39-56 s on grid25).
- ``energy`` (Szekely and Rizzo 2013): 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||, unbiased within-set terms.
- ``mmd`` (Gretton et al. 2012): unbiased MMD^2 with the mean of RBF kernels exp(-d^2 / (2 s^2)) over
  the bandwidths s = m * 2^j, j = -4..1, m the median pairwise distance of the reference set.
- ``swd`` (Bonneel et al. 2015): sliced 2-Wasserstein, sqrt of the mean over L evenly spaced directions
  (angles pi l / L, deterministic) of the squared 1-D W2 between the projections.

Pairwise sums are accumulated in blocks of rows (bounded memory), in float64 accumulators.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from bench.metrics.assignment import optimal_assignment

BANDWIDTH_EXPONENTS = tuple(range(-4, 2))   # s = m * 2^j, largest last
SWD_DIRECTIONS = 128
DENSE_W2_MAX = 300     # up to this many points the dense assignment is as fast


def rbf_bandwidths(ref: Tensor, max_points: int = 1000) -> list[float]:
    """Multi-scale RBF bandwidths from the median pairwise distance of (the first points of) ``ref``."""
    r = ref[:max_points].double()
    d = torch.cdist(r, r, compute_mode="donot_use_mm_for_euclid_dist")
    m = d[torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)].median().item()
    if not m > 0:
        raise ValueError("the reference set has no spread (all points equal): RBF bandwidths undefined")
    return [m * 2.0 ** j for j in BANDWIDTH_EXPONENTS]


def pair_sums(a: Tensor, b: Tensor, bandwidths: list[float], same: bool, batch: int = 16) -> tuple[float, float]:
    """(sum of ||a_i - b_j||, sum of the mean RBF kernel) over all pairs i != j (``same``: a is b).

    Squared distances come from coordinate differences in float32 (exact zeros on the diagonal, no
    cancellation), sums are accumulated in float64, and for ``same`` only blocks on or above the diagonal
    are computed (the sums are symmetric). The kernels of smaller bandwidths come from the largest one by
    repeated squaring: with s_j = s_max / 2^t, exp(-d^2 / 2 s_j^2) = exp(-d^2 / 2 s_max^2) ^ (4^t).
    Blocks are small (``batch`` rows, cache-resident) and spread over one single-threaded worker per
    CPU thread: on 2 cores this is several times faster than torch's intra-op threads on large blocks.
    """
    torch.set_flush_denormal(True)    # underflowing kernels would otherwise run 15-20x slower (ENVIRONMENT.md)
    s_max = max(bandwidths)
    steps = [round(math.log2(s_max / s)) for s in bandwidths]
    if any(abs(s_max / 2.0 ** t - s) > 1e-9 * s for t, s in zip(steps, bandwidths)):
        raise ValueError("bandwidths must be the largest one divided by powers of two")
    a32, bt = a.float().contiguous(), b.float().T.contiguous()
    starts = list(range(0, len(a), batch))
    workers = max(1, min(torch.get_num_threads(), len(starts)))

    def work(first: int) -> tuple[float, float]:
        rows = min(batch, len(a))
        d2, tmp, ker, acc = (torch.empty(rows, len(b)) for _ in range(4))
        dist_sum, kern_sum = 0.0, 0.0
        for i in starts[first::workers]:
            blk, lo = a32[i:i + batch], (i if same else 0)     # same: columns >= i only
            r, c = len(blk), len(b) - lo
            D2, T, K, S = (buf[:r, :c] for buf in (d2, tmp, ker, acc))
            for dim in range(blk.shape[1]):
                torch.sub(blk[:, dim:dim + 1], bt[dim:dim + 1, lo:], out=T if dim else D2)
                D2.addcmul_(T, T) if dim else D2.square_()
            torch.sqrt(D2, out=T)
            torch.mul(D2, -0.5 / s_max ** 2, out=K).exp_()
            S.copy_(K) if 0 in steps else S.zero_()
            for t in range(1, max(steps) + 1):
                K.square_().square_()
                if t in steps:
                    S.add_(K)
            ds, ks = T.sum(dtype=torch.float64).item(), S.sum(dtype=torch.float64).item()
            if same:   # the r x r diagonal sub-block holds both triangles and the excluded diagonal (d=0, k=1)
                ds = 2 * ds - T[:, :r].sum(dtype=torch.float64).item()
                ks = 2 * ks - S[:, :r].sum(dtype=torch.float64).item() - r * len(bandwidths)
            dist_sum += ds
            kern_sum += ks / len(bandwidths)
        return dist_sum, kern_sum

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(work, range(workers)))
    finally:
        torch.set_num_threads(threads)
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def energy_and_mmd(x: Tensor, y: Tensor, bandwidths: list[float], batch: int = 16,
                   yy: tuple[float, float] | None = None) -> tuple[float, float, tuple[float, float]]:
    """(energy distance, unbiased MMD^2, the y-y sums for reuse) between ``x`` and ``y``."""
    n, m = len(x), len(y)
    xx = pair_sums(x, x, bandwidths, True, batch)
    xy = pair_sums(x, y, bandwidths, False, batch)
    yy = yy or pair_sums(y, y, bandwidths, True, batch)
    energy = 2 * xy[0] / (n * m) - xx[0] / (n * (n - 1)) - yy[0] / (m * (m - 1))
    mmd = xx[1] / (n * (n - 1)) + yy[1] / (m * (m - 1)) - 2 * xy[1] / (n * m)
    return energy, mmd, yy


def swd(x: Tensor, y: Tensor, directions: int = SWD_DIRECTIONS) -> float:
    """Sliced 2-Wasserstein distance between 2-D sets (1-D W2 by sorting; quantiles when sizes differ)."""
    if x.shape[1] != 2 or y.shape[1] != 2:
        raise ValueError("swd here is defined on 2-D points")
    angles = torch.arange(directions, dtype=torch.float64) * math.pi / directions
    u = torch.stack([angles.cos(), angles.sin()])                 # [2, L]
    px, py = (x.double() @ u).sort(dim=0).values, (y.double() @ u).sort(dim=0).values
    if len(px) != len(py):
        q = (torch.arange(max(len(px), len(py)), dtype=torch.float64) + 0.5) / max(len(px), len(py))
        px, py = (_quantiles(p, q) for p in (px, py))
    return float(((px - py) ** 2).mean().sqrt())


def _quantiles(sorted_cols: Tensor, q: Tensor) -> Tensor:
    idx = (q * len(sorted_cols)).floor().long().clamp(max=len(sorted_cols) - 1)
    return sorted_cols[idx]


def w2_exact(x: Tensor, y: Tensor) -> float:
    """Exact W2 between two equal-size point sets (optimal assignment, see the module docstring)."""
    if len(x) != len(y):
        raise ValueError(f"exact W2 by assignment needs equal set sizes, got {len(x)} and {len(y)}")
    a, b = x.double().numpy(), y.double().numpy()
    return w2_dense(a, b) if len(a) <= DENSE_W2_MAX else w2_sparse(a, b)


def w2_dense(a: np.ndarray, b: np.ndarray) -> float:
    """W2 by scipy's dense assignment over the n x n cost matrix."""
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def w2_sparse(a: np.ndarray, b: np.ndarray) -> float:
    """W2 by the certified sparse assignment of ``bench.metrics.assignment`` (no n x n matrix)."""
    cols, _, _ = optimal_assignment(a, b)
    return float(np.sqrt(((a - b[cols]) ** 2).sum(1).mean()))
