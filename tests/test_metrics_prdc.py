"""Precision/recall (k=3) and density/coverage (k=5) on configurations with known answers, and against the
``prdc`` package (Naeem et al.'s reference implementation) value for value, ties included."""
from __future__ import annotations

import pytest
import torch

from bench.metrics.prdc import DC_NEIGHBOURS, PR_NEIGHBOURS, density_coverage, knn_radii, precision_recall


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
    # each ball strictly holds its centre and the k - 1 nearer neighbours (the k-th sits on the edge, where
    # matmul-based distances may round either way): k points per ball, density 1
    assert out["density"] == pytest.approx(1.0, abs=0.01)


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
    # fake balls have radius 0 (each fake point has 19 identical copies): strictly inside them lies nothing
    assert pr["recall"] == 0.0
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


def _prdc_package(real, fake, k):
    import contextlib
    import io

    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):          # it prints the set sizes
        return {m: float(v) for m, v in compute_prdc(real.numpy(), fake.numpy(), k).items()}


@pytest.mark.parametrize("seed,dims", [(0, 2), (1, 8), (2, 32)])
def test_matches_the_prdc_package_on_random_sets(seed, dims):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(300, dims, generator=g, dtype=torch.float64)
    fake = 1.3 * torch.randn(240, dims, generator=g, dtype=torch.float64) + 0.2
    pr, dc = _prdc_package(real, fake, PR_NEIGHBOURS), _prdc_package(real, fake, DC_NEIGHBOURS)
    ours = {**precision_recall(fake, real, batch=37), **density_coverage(fake, real, batch=37)}
    theirs = {"precision": pr["precision"], "recall": pr["recall"], "density": dc["density"], "coverage": dc["coverage"]}
    assert ours == pytest.approx(theirs, rel=1e-12, abs=0)      # one point more or less moves a value by >= 1/1500


def test_matches_the_prdc_package_on_ties():
    """Integer lattices put many points exactly on ball edges: the strict inequality decides them."""
    g = torch.Generator().manual_seed(4)
    real = torch.randint(0, 6, (200, 2), generator=g).double()
    fake = torch.randint(0, 7, (150, 2), generator=g).double()
    for k in (PR_NEIGHBOURS, DC_NEIGHBOURS):
        theirs = _prdc_package(real, fake, k)
        ours = {**precision_recall(fake, real, k), **density_coverage(fake, real, k)}
        assert ours == pytest.approx(theirs, rel=1e-12, abs=0), k
