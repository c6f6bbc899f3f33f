"""Keyed draws: values depend on (key, item index) alone, never on batch size, rank split or call order
of other streams."""
import pytest
import torch

from methods.base import StepRandom, per_image_noise
from methods.noise import BLOCK, keyed_randint, keyed_randn


@pytest.mark.parametrize("world", [2, 3, 5])
def test_step_draws_of_a_rank_split_equal_the_one_process_draws(world):
    local = 30                                           # not a multiple of the block: shares straddle blocks
    one = StepRandom(4, 9, 0, 1, local * world, "cpu")
    full = [one.randn(3), one.rand(2), one.randint(7, 4), one.randn(2, rows=3)]
    parts = [[], [], [], []]
    for rank in range(world):
        r = StepRandom(4, 9, rank, world, local, "cpu")
        for i, t in enumerate([r.randn(3), r.rand(2), r.randint(7, 4), r.randn(2, rows=3)]):
            parts[i].append(t)
    for f, p in zip(full, parts):
        assert torch.equal(f, torch.cat(p))


def test_each_call_is_its_own_stream_and_the_step_matters():
    r = StepRandom(1, 2, 0, 1, 100, "cpu")
    a, b = r.randn(4), r.randn(4)
    assert not torch.equal(a, b)
    assert not torch.equal(a, StepRandom(1, 3, 0, 1, 100, "cpu").randn(4))


def test_a_rank_draws_only_its_share():
    r = StepRandom(0, 0, 3, 4, 16, "cpu")
    assert r.randn(5).shape == (16, 5)


def test_keyed_rows_for_any_index_order_equal_the_contiguous_draw():
    full = keyed_randn((7,), range(0, 5 * BLOCK), (3,), "cpu")
    idx = torch.tensor([3 * BLOCK + 5, 2, BLOCK - 1, 4 * BLOCK, 2])
    assert torch.equal(keyed_randn((7,), idx, (3,), "cpu"), full[idx])
    assert torch.equal(keyed_randn((7,), range(BLOCK + 3, 2 * BLOCK + 9), (3,), "cpu"), full[BLOCK + 3:2 * BLOCK + 9])
    assert keyed_randn((7,), range(5, 5), (3,), "cpu").shape == (0, 3)
    assert int(keyed_randint((7,), range(0, 1000), 5, (2,), "cpu").max()) == 4


@pytest.mark.parametrize("draws", [1, 4])
def test_per_image_noise_depends_only_on_the_seed(draws):
    seeds = torch.arange(1_000_000, 1_000_500)
    full = per_image_noise(seeds, (2, 3), "cpu", draws=draws)
    for sl in (slice(0, 1), slice(17, 200), slice(499, 500)):
        assert torch.equal(per_image_noise(seeds[sl], (2, 3), "cpu", draws=draws), full[sl])
    perm = torch.randperm(500, generator=torch.Generator().manual_seed(0))
    assert torch.equal(per_image_noise(seeds[perm], (2, 3), "cpu", draws=draws), full[perm])
    assert abs(float(full.mean())) < 0.05 and abs(float(full.std()) - 1) < 0.05


def test_negative_indices_are_refused():
    with pytest.raises(ValueError, match="indices >= 0"):
        keyed_randn((1,), torch.tensor([-1, 2]), (2,), "cpu")
