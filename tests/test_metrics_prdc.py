"""Precision/recall (k=3) and density/coverage (k=5) on configurations with known answers."""
from __future__ import annotations

import pytest
import torch

from bench.metrics.prdc import density_coverage, knn_radii, precision_recall


def grid(n_side: int, offset=(0.0, 0.0)) -> torch.Tensor:
    v = torch.arange(n_side, dtype=torch.float32)
    return torch.cartesian_prod(v, v) + torch.tensor(offset)


def test_knn_radii_on_a_grid():
    # on a unit grid the 4 nearest neighbours of an interior point are at distance 1, the next at sqrt(2)
    x = grid(6)
    r3, r5 = knn_radii(x, 3), knn_radii(x, 5)
    interior = ((x > 0) & (x < 5)).all(1)
    assert torch.allclose(r3[interior], torch.ones(int(interior.sum())))
    assert torch.allclose(r5[interior], torch.full((int(interior.sum()),), 2 ** 0.5))
    with pytest.raises(ValueError, match="more than k=3"):
        knn_radii(x[:3], 3)


def test_identical_sets_score_perfectly():
    x = torch.randn(400, 8, generator=torch.Generator().manual_seed(0))
    assert precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}
    out = density_coverage(x, x)
    assert out["coverage"] == 1.0
    # each point lies in its own ball and in those of the k points it is a neighbour of: (k + 1) / k; the
    # k-th neighbour sits exactly on the ball's edge, where matmul-based distances may round either way
    assert out["density"] == pytest.approx(1.0 + 1 / 5, abs=0.01)


def test_far_away_samples_score_zero():
    real = torch.randn(300, 4, generator=torch.Generator().manual_seed(1))
    fake = real + 100.0
    assert precision_recall(fake, real) == {"precision": 0.0, "recall": 0.0}
    assert density_coverage(fake, real) == {"density": 0.0, "coverage": 0.0}


def test_collapsed_generator_has_precision_but_no_recall():
    real = grid(10)                       # 100 points
    fake = real[:10].repeat(20, 1)        # all samples on the first row of the grid
    pr = precision_recall(fake, real)
    assert pr["precision"] == 1.0
    # fake balls have radius 0 (each fake point has 19 identical copies): only the 10 real points under them
    assert pr["recall"] == pytest.approx(0.10)
    # real balls (k=5) have radius sqrt(2) inside the grid, >= 1 everywhere: the first two rows are covered
    assert density_coverage(fake, real)["coverage"] == pytest.approx(0.20)


def test_half_of_the_real_support():
    real = torch.cat([grid(10), grid(10, (100.0, 0.0))])    # two far-apart clusters of 100
    fake = grid(10)                                          # the first cluster exactly
    pr = precision_recall(fake, real)
    assert pr == {"precision": 1.0, "recall": 0.5}
    assert density_coverage(fake, real)["coverage"] == 0.5


@pytest.mark.parametrize("batch", [1, 13, 4096])
def test_results_do_not_depend_on_the_batch_size(batch):
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(257, 16, generator=g), 1.2 * torch.randn(199, 16, generator=g) + 0.3
    assert precision_recall(fake, real, batch=batch) == precision_recall(fake, real, batch=64)
    assert density_coverage(fake, real, batch=batch) == density_coverage(fake, real, batch=64)
