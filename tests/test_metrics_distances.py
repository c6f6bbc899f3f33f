"""Frechet distance, exact W2, energy/MMD, SWD and mode coverage against known answers."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch

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
