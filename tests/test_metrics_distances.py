"""Frechet distance, exact W2, energy/MMD, SWD and mode coverage against known answers."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching
from scipy.spatial import cKDTree

from bench.metrics import assignment as A
from bench.metrics import distances as D
from bench.metrics.features import frechet_distance, frechet_from_stats
from bench.metrics.toy import mode_coverage


def gaussian(n, mean, cov, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(mean), generator=g, dtype=torch.float64) @ torch.linalg.cholesky(
        torch.tensor(cov, dtype=torch.float64)).T + torch.tensor(mean, dtype=torch.float64)


def test_frechet_of_a_set_with_itself_is_zero():
    x = gaussian(500, [0.5, -1.0, 2.0], [[1, 0.3, 0], [0.3, 2, 0.1], [0, 0.1, 0.5]], 0)
    assert abs(frechet_distance(x, x)) < 1e-8


def test_frechet_matches_the_closed_form_for_two_gaussians():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([1.0, -1.0])
    s1, s2 = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[1.0, -0.3], [-0.3, 0.5]])
    root = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
    got = frechet_from_stats({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2})
    assert got == pytest.approx(expected, rel=1e-9)
    # commuting (diagonal) covariances: ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2
    d1, d2 = np.diag([4.0, 1.0]), np.diag([1.0, 9.0])
    assert frechet_from_stats({"mu": mu1, "sigma": d1}, {"mu": mu2, "sigma": d2}) == pytest.approx(
        5.0 + (2 - 1) ** 2 + (1 - 3) ** 2, rel=1e-12)


def test_frechet_of_samples_approaches_the_population_value():
    x = gaussian(20000, [0, 0], [[1, 0], [0, 1]], 1)
    y = gaussian(20000, [3, 0], [[4, 0], [0, 1]], 2)
    assert frechet_distance(x, y) == pytest.approx(9 + 1, rel=0.03)


def test_w2_is_exact_on_small_sets():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[1.0, 1.0], [0.0, 1.0]])     # optimal: move each point up by 1
    assert D.w2_exact(x, y) == pytest.approx(1.0)
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
    best = min(sum(((a[i] - b[p[i]]) ** 2).sum().item() for i in range(6)) / 6
               for p in itertools.permutations(range(6)))
    assert D.w2_exact(a, b) == pytest.approx(math.sqrt(best), rel=1e-12)
    assert D.w2_exact(a, a + torch.tensor([3.0, 4.0])) == pytest.approx(5.0)   # a translation costs its length
    with pytest.raises(ValueError, match="equal set sizes"):
        D.w2_exact(a, b[:5])


def _dense_cost(a, b):
    c = ((a[:, None] - b[None]) ** 2).sum(-1)
    r, s = linear_sum_assignment(c)
    return c, c[r, s].sum()


def _check_certified(a, b):
    """The sparse solver returns a permutation of the dense optimal cost, with duals valid on all pairs."""
    cols, u, v = A.optimal_assignment(a, b)
    c, best = _dense_cost(a, b)
    assert sorted(cols) == list(range(len(a)))
    assert c[np.arange(len(a)), cols].sum() == pytest.approx(best, rel=1e-10, abs=1e-12)
    reduced = c - u[:, None] - v[None]
    scale = 4 * ((np.vstack([a, b]) - np.vstack([a, b]).mean(0)) ** 2).sum(1).max()
    assert reduced.min() >= -1e-11 * scale
    assert np.abs(reduced[np.arange(len(a)), cols]).max() <= 1e-11 * scale
    return cols


def _modes(rng, n, means, std):
    return means[rng.integers(0, len(means), n)] + std * rng.standard_normal((n, 2))


GRID = np.array([(i, j) for i in (-4.0, -2.0, 0.0, 2.0, 4.0) for j in (-4.0, -2.0, 0.0, 2.0, 4.0)])
RING = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)


@pytest.mark.parametrize("case", ["gaussian", "grid25", "ring8", "uniform_vs_blob", "one_mode_vs_grid"])
def test_sparse_assignment_equals_the_dense_one(case):
    rng = np.random.default_rng(11)
    n = 500
    a, b = {
        "gaussian": lambda: (rng.standard_normal((n, 2)), rng.standard_normal((n, 2)) + [0.5, 0]),
        "grid25": lambda: (_modes(rng, n, GRID, 0.05), _modes(rng, n, GRID, 0.05)),
        "ring8": lambda: (_modes(rng, n, RING, 0.01), _modes(rng, n, RING, 0.01)),
        "uniform_vs_blob": lambda: (rng.uniform(-1, 1, (n, 2)), 0.3 * rng.standard_normal((n, 2))),
        "one_mode_vs_grid": lambda: (_modes(rng, n, GRID[:1], 0.05), _modes(rng, n, GRID, 0.05)),
    }[case]()
    _check_certified(a, b)


def test_the_certificate_adds_edges_the_nearest_neighbour_graph_lacks(monkeypatch):
    """All x in one corner cluster, y spread: the k-NN graph has no perfect matching at all, so the
    solver's exits and certificate loop must add edges before it can finish."""
    rng = np.random.default_rng(12)
    n, k = 500, 2
    a, b = _modes(rng, n, GRID[:1], 0.05), _modes(rng, n, GRID, 0.05)
    ia = cKDTree(b).query(a, k)[1]
    ib = cKDTree(a).query(b, k)[1]
    rows = np.concatenate([np.repeat(np.arange(n), k), ib.ravel()])
    cols = np.concatenate([ia.ravel(), np.repeat(np.arange(n), k)])
    knn = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    assert (maximum_bipartite_matching(knn, perm_type="column") >= 0).sum() < n
    monkeypatch.setattr(A, "K", k)
    monkeypatch.setattr(A, "BASE", 50)
    calls = []
    real = A.power_knn
    monkeypatch.setattr(A, "power_knn", lambda *args: calls.append(1) or real(*args))
    _check_certified(a, b)
    assert len(calls) > 4 * 4      # 3 for the initial duals and 1 certificate per level (4 levels) at least


def test_power_knn_is_exact():
    rng = np.random.default_rng(13)
    q, p = _modes(rng, 900, GRID, 0.05), rng.uniform(-5, 5, (800, 2))
    pot = 2 * p @ np.array([1.0, -0.5]) + rng.standard_normal(800)
    idx, val = A.power_knn(q, A.Boxes(q, 64), p, A.Boxes(p, 64), pot, 5)
    s = ((q[:, None] - p[None]) ** 2).sum(-1) - pot
    assert np.allclose(val, np.sort(s, 1)[:, :5], rtol=0, atol=1e-12)
    assert np.allclose(np.take_along_axis(s, idx, 1), val, rtol=0, atol=1e-12)


def test_sparse_assignment_with_ties_and_duplicates():
    rng = np.random.default_rng(14)
    base = rng.standard_normal((60, 2))
    a = base[rng.integers(0, 60, 400)]                  # 400 points on 60 sites
    b = base[rng.integers(0, 20, 400)] + [0.1, 0.0]
    _check_certified(a, b)
    perm = rng.permutation(400)
    cols, _, _ = A.optimal_assignment(a, a[perm])       # a set against a permutation of itself costs 0
    assert ((a - a[perm][cols]) ** 2).sum() == 0
    same = np.zeros((400, 2))                           # one repeated point against spread points
    _check_certified(same, rng.standard_normal((400, 2)))
    grid = np.stack(np.meshgrid(np.arange(20.0), np.arange(16.0)), -1).reshape(-1, 2)   # exact ties everywhere
    _check_certified(grid, grid[::-1] + 0.5)


def test_w2_exact_uses_the_sparse_solver_above_the_dense_size_and_agrees():
    g = torch.Generator().manual_seed(15)
    x = torch.randn(D.DENSE_W2_MAX + 200, 2, generator=g, dtype=torch.float64)
    y = torch.rand(D.DENSE_W2_MAX + 200, 2, generator=g, dtype=torch.float64) * 3
    _, best = _dense_cost(x.numpy(), y.numpy())
    assert D.w2_exact(x, y) == pytest.approx(math.sqrt(best / len(x)), rel=1e-10)
    assert D.w2_exact(x[:1], y[:1]) == pytest.approx(float((x[0] - y[0]).norm()))
    assert A.optimal_assignment(x[:1].numpy(), y[:1].numpy())[0].tolist() == [0]
    with pytest.raises(ValueError, match="equal set sizes"):
        D.w2_exact(x, y[:-1])


def _brute_pairs(a, b, bw, same):
    d2 = ((a[:, None, :] - b[None]) ** 2).sum(-1)
    k = sum(torch.exp(-d2 / (2 * s * s)) for s in bw) / len(bw)
    keep = ~torch.eye(len(a), dtype=torch.bool) if same else torch.ones_like(d2, dtype=torch.bool)
    return d2.sqrt()[keep].sum().item(), k[keep].sum().item()


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_pair_sums_match_brute_force_at_any_batch_size(batch):
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(150, 2, generator=g, dtype=torch.float64), 2 * torch.randn(90, 2, generator=g, dtype=torch.float64)
    bw = D.rbf_bandwidths(b)
    for x, y, same in ((a, a, True), (a, b, False)):
        got, want = D.pair_sums(x, y, bw, same, batch), _brute_pairs(x, y, bw, same)
        assert got == pytest.approx(want, rel=1e-5)


def test_energy_and_mmd_are_near_zero_for_equal_distributions_and_positive_otherwise():
    x, x2 = gaussian(1500, [0, 0], [[1, 0], [0, 1]], 5), gaussian(1500, [0, 0], [[1, 0], [0, 1]], 6)
    y = gaussian(1500, [1, 0], [[1, 0], [0, 1]], 7)
    bw = D.rbf_bandwidths(x)
    e_same, m_same, _ = D.energy_and_mmd(x2, x, bw)
    e_diff, m_diff, _ = D.energy_and_mmd(y, x, bw)
    assert abs(e_same) < 0.01 and abs(m_same) < 1e-3
    assert e_diff > 0.3 and m_diff > 0.02
    # x against itself: the cross term includes the n zero self-distances, the within terms exclude them
    n, mean_offdiag = len(x), _brute_pairs(x, x, bw, True)[0] / (len(x) * (len(x) - 1))
    assert D.energy_and_mmd(x, x, bw)[0] == pytest.approx(-2 * mean_offdiag / n, rel=1e-4)


def test_swd_of_a_translation_and_of_identical_sets():
    x = gaussian(2000, [0, 0], [[1, 0], [0, 1]], 8)
    assert D.swd(x, x) == pytest.approx(0.0, abs=1e-12)
    # shift t: the projection on direction u moves by <t, u>; mean over half-circle angles of cos^2 = 1/2
    assert D.swd(x, x + torch.tensor([2.0, 0.0], dtype=torch.float64)) == pytest.approx(2 / math.sqrt(2), rel=1e-9)


MEANS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
W = torch.full((4,), 0.25)


def test_mode_coverage_all_modes():
    x = MEANS.repeat(25, 1) + 0.1 * torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    out = mode_coverage(x, MEANS, 1.0, W)
    assert out == {"modes": 4.0, "hq_frac": 1.0, "reverse_kl": pytest.approx(0.0, abs=1e-12)}


def test_mode_coverage_half_the_modes():
    x = MEANS[:2].repeat(50, 1)
    out = mode_coverage(x, MEANS, 1.0, W)
    assert out["modes"] == 2.0 and out["hq_frac"] == 1.0
    assert out["reverse_kl"] == pytest.approx(math.log(2))      # KL(uniform on 2 || uniform on 4)


def test_mode_coverage_off_mode_points():
    x = torch.cat([MEANS.repeat(10, 1), torch.full((40, 2), 5.0)])     # 40 of 80 points between the modes
    out = mode_coverage(x, MEANS, 1.0, W)
    assert out["modes"] == 4.0 and out["hq_frac"] == 0.5
    out = mode_coverage(torch.full((10, 2), 5.0), MEANS, 1.0, W)
    assert out == {"modes": 0.0, "hq_frac": 0.0, "reverse_kl": None}
