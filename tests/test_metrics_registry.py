"""The registry: streaming equals in-memory, batch sizes do not matter, sources, caches, clear errors."""
from __future__ import annotations

import pytest
import torch

from bench.data import build_data
from bench.metrics import Evaluation, MetricOptions, check_metrics, default_metrics, evaluate, metric_names
from bench.metrics.registry import family_of

TOY_DEFAULT = ["modes", "hq_frac", "reverse_kl", "fd_raw", "fd_raw_floor", "w2", "w2_floor", "energy",
               "energy_floor", "mmd", "mmd_floor", "swd", "swd_floor"]


@pytest.fixture(scope="module")
def ring():
    data = build_data({"name": "ring8", "n_train": 100})
    x, y = data.floor(400)
    return data, x + 0.005 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)), y


def test_toy_default_set_is_every_toy_metric(ring):
    assert default_metrics(ring[0]) == TOY_DEFAULT
    assert default_metrics(build_data({"name": "moons", "n_train": 10})) == TOY_DEFAULT[3:]   # no known modes


def test_results_do_not_depend_on_feature_batch_size_or_streaming(ring, tmp_path):
    data, x, _ = ring
    names = TOY_DEFAULT + ["precision_raw", "recall_raw", "density_raw", "coverage_raw"]
    a = evaluate(names, x, None, data, 400, MetricOptions(feature_batch_size=7, cache_dir=str(tmp_path)))
    b = evaluate(names, x, None, data, 400, MetricOptions(feature_batch_size=1000, cache_dir=str(tmp_path)))
    ev = Evaluation(names, data, 400, MetricOptions(cache_dir=str(tmp_path)))
    for chunk in x.split(33):
        ev.add(chunk)
    c = ev.finish()
    assert a.values == b.values == c.values
    assert all(v is not None for v in a.values.values())


def test_every_value_names_its_source(ring):
    data, x, _ = ring
    r = evaluate(["modes", "w2", "w2_floor"], x, None, data, 400)
    assert set(r.values) == {"modes", "w2", "w2_floor", "w2_floor_spread"}
    src = r.sources["w2"]
    assert src["extractor"] == "raw" and src["n_samples"] == 400 and src["n_reference"] == 400
    assert "ring8 reference" in src["reference"] and "weights_hash" in src
    # samples drawn from the data sit at the data-versus-data floor (400 points: W2 is far from 0)
    assert 0.5 < r.values["w2"] / r.values["w2_floor"] < 2


def test_metric_values_respond_to_sample_quality(ring):
    data, x, _ = ring
    good = evaluate(TOY_DEFAULT, x, None, data, 400).values
    collapsed = evaluate(TOY_DEFAULT, torch.tensor([[1.0, 0.0]]).repeat(400, 1), None, data, 400).values
    assert good["modes"] == 8 and collapsed["modes"] == 1
    for m in ("fd_raw", "w2", "energy", "mmd", "swd"):
        assert collapsed[m] > 4 * max(good[m], good[f"{m}_floor"], 1e-4), m


def test_clear_errors_before_anything_runs(ring):
    data = ring[0]
    with pytest.raises(KeyError, match="unknown metric 'nope'; choose from"):
        family_of("nope")
    with pytest.raises(ValueError, match="fid.*cannot run on data 'ring8': Inception metrics need image data"):
        check_metrics(["fid"], data)
    with pytest.raises(ValueError, match="stacked_modes, stacked_kl cannot run.*data=stacked_digits"):
        check_metrics(["stacked_modes", "stacked_kl"], build_data({"name": "digits"}))
    with pytest.raises(ValueError, match="no known Gaussian modes"):
        check_metrics(["modes"], build_data({"name": "moons", "n_train": 10}))


def test_every_issue_metric_is_registered():
    wanted = {"fid", "kid", "is", "precision", "recall", "density", "coverage", "fd_domain", "kid_domain",
              "class_acc", "classes_covered", "stacked_modes", "stacked_kl", *TOY_DEFAULT}
    assert wanted <= set(metric_names())


def test_config_rejects_bad_metric_options():
    from bench.config import ConfigError, compose_config
    from bench.tasks import prepare

    with pytest.raises(ConfigError, match="eval.metrics: unknown \\['fidd'\\]"):
        prepare(compose_config(["eval.metrics=[fidd]"]))
    with pytest.raises(ConfigError, match="eval.metrics: metric fid cannot run on data 'ring8'"):
        prepare(compose_config(["eval.metrics=[fid]"]))
    with pytest.raises(ConfigError, match="eval.feature_batch_size must be >= 1"):
        prepare(compose_config(["eval.feature_batch_size=0"]))
    spec = prepare(compose_config(["method=flow", "data=digits", "eval=digits"]))
    assert spec.metrics == ["fd_domain", "kid_domain", "precision_domain", "recall_domain", "density_domain",
                            "coverage_domain", "class_acc", "classes_covered"]
