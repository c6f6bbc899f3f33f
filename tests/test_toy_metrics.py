"""Mode coverage and energy distance on sets with known answers (PROTOCOLS.md)."""
import math

import pytest
import torch

from bench.data import build_data
from bench.metrics import evaluate
from bench.metrics.toy import energy_distance, mode_coverage

RING = build_data({"name": "ring8", "n_train": 10, "seed": 0})


def _cov(x):
    m = RING.modes
    return mode_coverage(x, m.means, m.std, m.weights)


def test_data_itself_covers_every_mode():
    x, _ = RING.reference(2500)
    c = _cov(x)
    assert c["modes"] == 8
    assert abs(c["hq_frac"] - (1 - math.exp(-4.5))) < 0.01      # P(r < 3 sigma) of a 2-D Gaussian
    assert c["reverse_kl"] < 0.01


def test_half_the_modes_and_off_mode_points():
    means = RING.modes.means
    x = torch.cat([means[:4].repeat(25, 1), torch.zeros(100, 2)])
    c = _cov(x)
    assert c["modes"] == 4 and c["hq_frac"] == 0.5
    assert c["reverse_kl"] == pytest.approx(math.log(2))


def test_collapsed_generator_scores_high_quality_but_one_mode():
    c = _cov(RING.modes.means[:1].repeat(50, 1))
    assert c["modes"] == 1 and c["hq_frac"] == 1.0 and c["reverse_kl"] == pytest.approx(math.log(8))


def test_no_high_quality_sample_gives_no_kl():
    assert _cov(torch.full((10, 2), 5.0)) == {"modes": 0.0, "hq_frac": 0.0, "reverse_kl": None}


def test_energy_distance_is_zero_in_expectation_for_equal_laws_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g)
    assert abs(energy_distance(a, b)) < 0.01
    # Closed form for 1-D point masses: E = 2|a - b| between deltas at 0 and 1 (within terms vanish).
    assert energy_distance(torch.zeros(50, 1), torch.ones(60, 1)) == pytest.approx(2.0)
    assert energy_distance(a, b + 1.0) > 0.3


def test_evaluate_records_values_and_sources():
    x, _ = RING.reference(500)
    res = evaluate(["modes", "energy", "energy_floor"], x, None, RING, 500)
    assert res.values["modes"] == 8
    assert res.sources["energy"]["extractor"] == "raw" and res.sources["energy"]["n_samples"] == 500
    assert abs(res.values["energy_floor"]) < 0.01
