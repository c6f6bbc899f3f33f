"""Toy data follows PROTOCOLS.md exactly and is deterministic."""
import math

import pytest
import torch

from bench.data import build_data
from bench.data.sampler import EpochSampler
from bench.data.toy import TOYS


def _toy(name, n=20000):
    return build_data({"name": name, "n_train": n, "seed": 0})


def test_ring8_and_grid25_follow_the_veegan_protocol():
    ring = _toy("ring8")
    a = 2 * math.pi * torch.arange(8) / 8
    torch.testing.assert_close(ring.modes.means, torch.stack([torch.cos(a), torch.sin(a)], 1))
    assert ring.modes.std == 0.01
    grid = _toy("grid25")
    assert grid.modes.std == 0.05 and len(grid.modes.means) == 25
    assert set(grid.modes.means.flatten().tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


@pytest.mark.parametrize("name", ["ring8", "grid25", "bimodal"])
def test_labels_are_mixture_components_and_spread_matches_std(name):
    d = _toy(name)
    resid = d.x - d.modes.means[d.y]
    assert abs(resid.std().item() - d.modes.std) < 0.05 * d.modes.std
    counts = torch.bincount(d.y, minlength=len(d.modes.means)).float()
    assert (counts / counts.sum() - 1 / len(counts)).abs().max() < 0.02


@pytest.mark.parametrize("name", sorted(TOYS))
def test_seeded_and_split(name):
    a, b = _toy(name, 500), _toy(name, 500)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a.x.shape == (500, 2) and a.y.dtype == torch.long
    assert not torch.equal(a.reference(500)[0], a.x)
    assert not torch.equal(a.reference(500)[0], a.floor(500)[0])


def test_checkerboard_lies_on_black_squares():
    x, _ = _toy("checkerboard").reference(5000)
    cells = ((x + 1) * 2).floor().long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all() and x.abs().max() <= 1


def test_epoch_sampler_visits_every_index_once_per_epoch_and_is_stateless():
    s = EpochSampler(10, seed=3)
    first = s.indices(0, 10)
    assert sorted(first.tolist()) == list(range(10))
    assert torch.equal(s.indices(7, 6), torch.cat([first[7:], EpochSampler(10, 3).indices(10, 3)]))


def test_batches_shard_the_global_batch_across_ranks():
    d = _toy("ring8", 1000)
    full = d.batch(5, 0, 0, 1, 64, "cpu")
    halves = [d.batch(5, 0, r, 2, 32, "cpu") for r in (0, 1)]
    assert torch.equal(full.x, torch.cat([h.x for h in halves]))
    assert torch.equal(full.random.randn(3), torch.cat([h.random.randn(3) for h in halves]))
