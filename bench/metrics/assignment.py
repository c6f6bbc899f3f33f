"""Exact optimal assignment between two equal-size point sets under squared Euclidean cost, without the
n x n cost matrix: a sparse primal-dual (Hungarian) solver whose answer is certified on all n^2 pairs.

Method (a multiscale sparse Hungarian method; cf. Schmitzer 2016, "A sparse multiscale algorithm for
dense optimal transport", for the multiscale/shielding idea, and Kuhn 1955 / Jonker-Volgenant 1987 for
the primal-dual method):

1. Multiscale initial duals. Both sets are cut by median splits into equal numbers of groups of ~4
   points; the group centroids form a 4x smaller assignment problem, solved the same way (recursively,
   densely below ``BASE`` points). Its dual potentials, extended to the points by c-transforms
   (u_i = min_j c_ij - v_j, v_j = min_i c_ij - u_i), give duals that are feasible for ALL pairs.
2. Candidate graph: for every point, the ``K`` partners of smallest reduced cost c_ij - u_i - v_j, and
   all pairs between the points of two groups that the coarse solution matches.
3. Primal-dual phases on the graph: a maximum matching (Hopcroft-Karp) among tight edges
   (reduced cost <= tol); while points stay unmatched, one multi-source Dijkstra over the residual graph
   (reduced costs, scipy) from the free rows gives distances d, and the duals move by
   u_i += (L - d_i)^+, v_j -= (L - d_j)^+ with L the largest distance of a reachable free column. This
   keeps every graph edge feasible and the matched ones tight, and makes every shortest augmenting path
   up to L tight, so the next matching is larger. With no free column reachable, the reached rows get
   edges to the unreached columns of smallest reduced cost (and the next step uses the nearest L).
4. Certificate: the matching is optimal for the dense problem iff min_j (c_ij - v_j) >= u_i for every
   row. This minimum over all j ("power diagram" nearest neighbour) is computed exactly by
   ``power_knn``: pairs of k-d boxes are skipped with a lower bound that is exact up to 2 r_R r_C (the
   product of the box radii), the rest evaluated densely. Violating rows get their best edges, their u
   is lowered to restore feasibility (they become free) and phases resume; the loop ends certified.

Exactness: at exit every one of the n^2 reduced costs is >= -tol and the matched ones are <= tol,
tol = 1e-12 * (4 x the largest squared distance to the joint mean), so the matching's cost is within
2 n tol of the optimum (complementary slackness): exact to floating-point precision. The choices among
exactly tied candidates use a fixed pseudo-random offset below tol / 10, so results are deterministic.

Cost (2 shared CPU cores, ``python -m bench.perf.metrics w2``): ~1-2 s at n = 2,500 (scipy's dense
solver: 1.6-32 s there, the slow end for one-mode generators) and ~4-8 s at n = 10,000; memory O(n K).
The remaining time is mostly the ~300 primal-dual phases (Dijkstra + Hopcroft-Karp, ~15 ms each at
10K) and the exact power-diagram queries (~0.3 s each at 10K).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra, maximum_bipartite_matching

K = 8          # candidate partners per point
LEAF = 64      # points per box in power_knn
GROUP = 4      # points per group at the next coarser scale
EXITS = 2      # edges added per reached row when no free column is reachable
BASE = 200     # below this size: the complete graph
BLOCKS = True
TOL = 1e-12    # relative tolerance on reduced costs


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(s, s + l) over starts s and lengths l."""
    off = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return off + np.arange(int(lengths.sum()))


class Boxes:
    """k-d partition of points into contiguous runs of ``order``. ``balanced``: 2^depth median splits,
    depth = floor(log2(n / leaf)) (same box sizes for any two sets of equal size); otherwise splits at the
    bounding box's midpoint (compact boxes) until boxes hold <= leaf points or identical points."""

    def __init__(self, p: np.ndarray, leaf: int, balanced: bool = False):
        n = len(p)
        order, starts = np.arange(n), np.array([0])
        depth = int(math.floor(math.log2(max(n / leaf, 1.0)))) if balanced else 64
        for _ in range(depth):
            q = p[order]
            lengths = np.diff(np.append(starts, n))
            seg = np.repeat(np.arange(len(starts)), lengths)
            lo, hi = np.minimum.reduceat(q, starts, axis=0), np.maximum.reduceat(q, starts, axis=0)
            axis = (hi - lo).argmax(1)
            order = order[np.lexsort((q[np.arange(n), axis[seg]], seg))]
            if balanced:
                cut = starts + lengths // 2
            else:
                key, box = p[order, axis[seg]], np.arange(len(starts))
                mid = (lo[box, axis] + hi[box, axis]) / 2
                cut = starts + np.add.reduceat((key < mid[seg]).astype(np.int64), starts)
                cut = cut[(lengths > leaf) & (cut > starts) & (cut < starts + lengths)]
                if not len(cut):
                    break
            starts = np.sort(np.concatenate([starts, cut]))
        self.order, self.starts = order, starts
        self.lengths = np.diff(np.append(starts, n))
        q = p[order]
        lo, hi = np.minimum.reduceat(q, starts, axis=0), np.maximum.reduceat(q, starts, axis=0)
        self.centre, self.radius = (lo + hi) / 2, np.sqrt((((hi - lo) / 2) ** 2).sum(1))


def power_knn(q: np.ndarray, qb: Boxes, p: np.ndarray, pb: Boxes, pot: np.ndarray, k: int, jitter: float = 0.0,
              active: np.ndarray | None = None):
    """For every q_i, the k indices j with the smallest |q_i - p_j|^2 - pot_j (all j considered), sorted,
    and those values (computed directly). Exact up to rounding: a pair of boxes (R, C) is skipped only when
    min over R x C of |q|^2 - 2<q, p> + |p|^2 - pot - (row's k-th best so far) > 0, bounded below by the
    separable part min_i(.) + min_j(.) around the box centres minus 2 r_R r_C (and a rounding margin).
    ``jitter`` > 0 breaks exact ties differently for each pair (a fixed pseudo-random offset in [0, jitter)
    used only to choose): the first value is then the minimum to within ``jitter``. ``active``: only those
    queries are answered (the other rows of the result are meaningless)."""
    k = min(k, len(p))
    qq, pp = q[qb.order], p[pb.order]
    g, fq = (pp ** 2).sum(1) - pot[pb.order], (qq ** 2).sum(1)
    margin = 1e-10 * max(fq.max(), np.abs(g[g < 1e100]).max(initial=1.0))
    gmin = np.minimum.reduceat(g[:, None] - 2 * pp @ qb.centre.T, pb.starts, axis=0).T   # [boxes q, boxes p]
    cross = 2 * qb.centre @ pb.centre.T - 2 * qb.radius[:, None] * pb.radius[None]
    qc = 2 * qq @ pb.centre.T
    pt = pp.T.copy()
    ends = np.append(qb.starts[1:], len(q))

    def block(r, cs):
        cols = _ranges(pb.starts[cs], pb.lengths[cs])
        s, e = qb.starts[r], ends[r]
        return s, e, cols, (fq[s:e, None] + g[cols]) - 2 * (qq[s:e] @ pt[:, cols])

    # pass 1: each box of queries against its most promising boxes, for an upper bound on the k-th best
    best = np.argsort(np.minimum.reduceat(fq[:, None] - qc, qb.starts, axis=0) + gmin + cross, axis=1, kind="stable")
    live = np.ones(len(qb.starts), bool) if active is None else np.logical_or.reduceat(active[qb.order], qb.starts)
    ub = np.full(len(q), -np.inf)
    for r in np.flatnonzero(live):
        s, e, _, val = block(r, best[r, :np.searchsorted(np.cumsum(pb.lengths[best[r]]), k) + 1])
        ub[s:e] = np.partition(val, k - 1, axis=1)[:, k - 1]
    if active is not None:
        ub[~active[qb.order]] = -np.inf
    # pass 2: every box pair that may hold a better partner
    bound = np.minimum.reduceat((fq - ub)[:, None] - qc, qb.starts, axis=0) + gmin + cross
    idx = np.zeros((len(q), k), np.int64)
    for r in np.flatnonzero(live):
        s, e, cols, val = block(r, np.flatnonzero(bound[r] <= margin))
        if jitter:
            i, j = qb.order[s:e, None].astype(float), pb.order[cols][None].astype(float)
            val = val + jitter * ((i * 0.6180339887498949 + j * 0.7548776662466927) % 1.0)
        part = np.argpartition(val, k - 1, axis=1)[:, :k]
        idx[qb.order[s:e]] = pb.order[cols[part]]
    val = ((q[:, None] - p[idx]) ** 2).sum(-1) - pot[idx]
    o = np.argsort(val, axis=1, kind="stable")
    return np.take_along_axis(idx, o, 1), np.take_along_axis(val, o, 1)


class _Graph:
    """Candidate edges, sorted by row, with their exact costs."""

    def __init__(self, a: np.ndarray, b: np.ndarray):
        self.a, self.b, self.n = a, b, len(a)
        self.keys, self.c = np.zeros(0, np.int64), np.zeros(0)

    def add(self, rows, cols) -> None:
        new = np.unique(np.asarray(rows, np.int64).ravel() * self.n + np.asarray(cols).ravel())
        if len(self.keys):
            at = np.searchsorted(self.keys, new)
            new = new[self.keys[np.minimum(at, len(self.keys) - 1)] != new]
        if len(new):
            at = np.searchsorted(self.keys, new)
            r, c = new // self.n, new % self.n
            self.keys = np.insert(self.keys, at, new)
            self.c = np.insert(self.c, at, ((self.a[r] - self.b[c]) ** 2).sum(1))
            self.rows, self.cols = self.keys // self.n, self.keys % self.n
            self.indptr = np.searchsorted(self.rows, np.arange(self.n + 1))
            self.cols32, self.indptr32 = self.cols.astype(np.int32), self.indptr.astype(np.int32)

    def row_min(self, v: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(self.c - v[self.cols], self.indptr[:-1])


def _phases(g: _Graph, u: np.ndarray, v: np.ndarray, tol: float, exits=None) -> np.ndarray:
    """Primal-dual phases on ``g`` (duals updated in place) until the tight edges hold a perfect matching.
    ``exits(reached_rows, reached_cols)`` adds edges when no free column can be reached."""
    n = g.n
    while True:
        r = g.c - u[g.rows] - v[g.cols]
        tight = r <= tol
        t = sp.csr_matrix((np.ones(int(tight.sum())), g.cols32[tight],
                           np.concatenate([[0], np.cumsum(np.add.reduceat(tight, g.indptr[:-1]))]).astype(np.int32)),
                          shape=(n, n))
        match = maximum_bipartite_matching(t, perm_type="column")
        free = np.flatnonzero(match < 0)
        if not len(free):
            return match
        owner = np.full(n, -1, np.int32)
        owner[match[match >= 0]] = np.flatnonzero(match >= 0)
        has = owner >= 0
        stuck = False
        while True:   # residual graph: row i -> column n + j (reduced cost), matched column n + j -> its row (0)
            if stuck:
                r = g.c - u[g.rows] - v[g.cols]
            res = sp.csr_matrix((np.concatenate([np.maximum(r, 0.0), np.zeros(int(has.sum()))]),
                                 np.concatenate([g.cols32 + np.int32(n), owner[has]]),
                                 np.concatenate([g.indptr32, len(r) + np.cumsum(has, dtype=np.int32)])),
                                shape=(2 * n, 2 * n))
            d = dijkstra(res, indices=free, min_only=True)
            reach = d[n:][~has]
            reach = reach[np.isfinite(reach)]
            if len(reach):
                break
            exits(np.isfinite(d[:n]), np.isfinite(d[n:]))
            stuck = True
        # L: the largest distance of a reachable free column (many paths at once), the smallest right after
        # new edges were needed (a cautious step, as far outside the graph the duals are least reliable)
        phi = np.where(np.isfinite(d), np.maximum((reach.min() if stuck else reach.max()) - d, 0.0), 0.0)
        u += phi[:n]
        v -= phi[n:]


def _members(boxes: Boxes) -> np.ndarray:
    """[boxes, largest box] point indices of each box, -1 padded."""
    out = np.full((len(boxes.starts), boxes.lengths.max()), -1)
    box = np.repeat(np.arange(len(boxes.starts)), boxes.lengths)
    out[box, np.arange(len(box)) - boxes.starts[box]] = boxes.order
    return out


def _solve(a: np.ndarray, b: np.ndarray, tol: float):
    """(match, u, v): match[i] the column of row i, (u, v) duals certifying it on all pairs."""
    n, ar = len(a), np.arange(len(a))
    g = _Graph(a, b)
    if n <= BASE:
        g.add(np.repeat(ar, n), np.tile(ar, n))
        v = g.c.reshape(n, n).min(0)
        u = g.row_min(v)
        return _phases(g, u, v, tol), u, v
    ga, gb = Boxes(a, GROUP, balanced=True), Boxes(b, GROUP, balanced=True)
    ca = np.add.reduceat(a[ga.order], ga.starts, axis=0) / ga.lengths[:, None]
    cb = np.add.reduceat(b[gb.order], gb.starts, axis=0) / gb.lengths[:, None]
    coarse_match, _, coarse_v = _solve(ca, cb, tol)
    ta, tb = Boxes(a, LEAF), Boxes(b, LEAF)
    u = power_knn(a, ta, cb, Boxes(cb, LEAF), coarse_v, 1)[1][:, 0]
    jit = 0.1 * tol
    jb, val = power_knn(b, tb, a, ta, u, K, jit)
    v = val[:, 0]
    ja, val = power_knn(a, ta, b, tb, v, K, jit)
    u = val[:, 0]
    g.add(np.concatenate([np.repeat(ar, K), jb.ravel()]), np.concatenate([ja.ravel(), np.repeat(ar, K)]))
    if BLOCKS:      # all pairs between the points of matched groups: the coarse plan at the fine scale
        ma, mb = _members(ga), _members(gb)[coarse_match]
        keep = (ma[:, :, None] >= 0) & (mb[:, None, :] >= 0)
        g.add(np.broadcast_to(ma[:, :, None], keep.shape)[keep], np.broadcast_to(mb[:, None, :], keep.shape)[keep])

    def exits(rows, cols):   # edges from the reached rows to their best unreached columns
        j, _ = power_knn(a, ta, b, tb, np.where(cols, -1e200, v), EXITS, jit, rows)
        g.add(np.repeat(np.flatnonzero(rows), EXITS), j[rows])

    while True:
        match = _phases(g, u, v, tol, exits)
        j, val = power_knn(a, ta, b, tb, v, K, jit)
        bad = val[:, 0] - u < jit - tol      # the true minimum may be up to jit lower
        if not bad.any():
            return match, u, v
        g.add(np.repeat(np.flatnonzero(bad), K), j[bad])
        u[:] = np.minimum(u, g.row_min(v))     # the violating rows become free


def optimal_assignment(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal assignment of the rows of ``a`` [n, d] to those of ``b`` [n, d] for the cost |a_i - b_j|^2.

    Returns (cols, u, v): row i goes to column cols[i]; the duals satisfy |a_i - b_j|^2 - u_i - v_j >= -tol
    for all i, j, with equality up to tol on the assignment (tol as in the module docstring)."""
    a, b = np.ascontiguousarray(a, np.float64), np.ascontiguousarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"optimal_assignment needs two [n, d] arrays of one shape, got {a.shape} and {b.shape}")
    mean = np.vstack([a, b]).mean(0)           # costs do not change; |x|^2 - 2<x, y> + |y|^2 stays accurate
    a, b = a - mean, b - mean
    tol = TOL * max(4 * max((a ** 2).sum(1).max(), (b ** 2).sum(1).max()), np.finfo(float).tiny)
    return _solve(a, b, tol)
