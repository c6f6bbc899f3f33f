"""Data-versus-data floors from several independent draws (PROTOCOLS.md: report the floor beside W2 and
energy; one draw gives no interval): ``<m>_floor`` is the mean over the data's draws, ``<m>_floor_spread``
their standard deviation, each draw the metric of an independent data sample against the reference."""
from __future__ import annotations

import statistics

import torch

from bench.data import build_data
from bench.data.toy import FLOOR_DRAWS, TOYS
from bench.metrics import evaluate
from bench.metrics import registry
from bench.metrics.toy import energy_distance


def test_floor_is_the_mean_of_independent_draws_with_their_spread():
    data = build_data({"name": "ring8", "n_train": 1000})
    x = data.reference(300)[0] + 0.05
    r = evaluate(["energy", "energy_floor"], x, None, data, 300)
    ref = data.reference(300)[0]
    draws = [energy_distance(data.floor(300, k)[0], ref) for k in range(FLOOR_DRAWS)]
    assert len(set(draws)) == FLOOR_DRAWS                     # independent draws, not one sample reused
    assert abs(r.values["energy_floor"] - statistics.mean(draws)) < 1e-9
    assert abs(r.values["energy_floor_spread"] - statistics.stdev(draws)) < 1e-9
    assert r.sources["energy_floor"]["floor_draws"] == draws
    assert abs(r.values["energy"] - energy_distance(x, ref)) < 1e-9


def test_floors_are_memoised_per_process_and_keyed_by_the_reference():
    data = build_data({"name": "ring8", "n_train": 1000})
    registry._FLOORS.clear()
    evaluate(["energy", "energy_floor"], data.reference(200)[0], None, data, 200)
    evaluate(["energy", "energy_floor"], data.reference(200)[0] * 0.9, None, data, 200)
    assert len(registry._FLOORS) == 1
    evaluate(["energy", "energy_floor"], data.reference(250)[0], None, data, 250)
    other = build_data({"name": "ring8", "n_train": 1000, "seed": 5})
    evaluate(["energy", "energy_floor"], other.reference(200)[0], None, other, 200)
    assert len(registry._FLOORS) == 3


def test_validation_split_is_neither_the_reference_nor_a_floor_draw():
    data = build_data({"name": "grid25", "n_train": 1000})
    v = data.validation(100)[0]
    assert not torch.equal(v, data.reference(100)[0])
    assert all(not torch.equal(v, data.floor(100, k)[0]) for k in range(FLOOR_DRAWS))
    assert torch.equal(data.floor(100, 0)[0], TOYS["grid25"]()[0](100, 2)[0])    # draw 0: earlier records' floor
