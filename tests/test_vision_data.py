"""MNIST and CIFAR-10 from torchvision's file layouts: values, splits, errors, and the domain classifier
trained on them (the test writes small files in the real formats: tests/fake_vision.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data import build_data
from bench.metrics import MetricOptions, evaluate
from bench.metrics.domain import classifier_file
from tests.fake_vision import COLOURS, write_cifar10, write_mnist


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    return root, write_mnist(root), write_cifar10(root)


@pytest.fixture(scope="module")
def opts(tmp_path_factory):
    return MetricOptions(cache_dir=str(tmp_path_factory.mktemp("cache")))


def test_mnist_values_and_splits(roots):
    root, mnist, _ = roots
    data = build_data({"name": "mnist", "root": str(root)})
    assert data.spec.shape == (1, 28, 28) and data.spec.num_classes == 10 and data.spec.value_range == (-1.0, 1.0)
    x, y = data.reference(0)
    torch.testing.assert_close(x, torch.from_numpy(mnist["train"]).float()[:, None] / 127.5 - 1.0)
    assert y.tolist() == [i % 10 for i in range(300)]
    floor_x, _ = data.floor(0)
    assert len(floor_x) == 100 and torch.equal(((floor_x + 1) * 127.5).round().to(torch.uint8)[:, 0],
                                               torch.from_numpy(mnist["t10k"]))


def test_cifar10_reads_channels_in_order(roots):
    root, _, cifar = roots
    data = build_data({"name": "cifar10", "root": str(root)})
    assert data.spec.shape == (3, 32, 32)
    x, y = data.reference(0)
    assert len(x) == 300 and len(data.floor(0)[0]) == 100
    first = np.concatenate([cifar[f"data_batch_{i}"] for i in range(1, 6)])
    torch.testing.assert_close(x, torch.from_numpy(first).float() / 127.5 - 1.0)
    mean_rgb = ((x + 1) * 127.5).mean(dim=(2, 3))                   # noise averages out: the class colour
    assert (mean_rgb - torch.from_numpy(COLOURS[y.numpy()]).float()).abs().max() < 6


@pytest.mark.parametrize("name,what", [("mnist", "MNIST"), ("cifar10", "CIFAR-10")])
def test_missing_files_name_the_fix(tmp_path, name, what):
    with pytest.raises(FileNotFoundError, match=rf"data.root={tmp_path}: no {what} files \(expected .*\); set "
                                                rf"data.root=PATH .* data.download=true"):
        build_data({"name": name, "root": str(tmp_path)})


def test_root_defaults_to_the_environment(roots, monkeypatch):
    monkeypatch.setenv("DRIFTBENCH_DATA", str(roots[0]))
    assert build_data({"name": "mnist"}).spec.name == "mnist"


def test_wrong_files_are_refused(tmp_path):
    import pickle

    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((4, 3 * 16 * 16), np.uint8), "labels": [0, 1, 2, 3]}, f)
    with pytest.raises(ValueError, match=r"test_batch: CIFAR-10 rows must hold 3,072 values .* got an array of shape \(4, 768\)"):
        build_data({"name": "cifar10", "root": str(tmp_path)})
    write_mnist(tmp_path)
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1] + bytes([12]))
    with pytest.raises(ValueError, match=r"mnist labels must be 0..9, found 0..12"):
        build_data({"name": "mnist", "root": str(tmp_path)})


def test_mnist_domain_metrics(roots, opts):
    data = build_data({"name": "mnist", "root": str(roots[0])})
    entry = torch.load(classifier_file(data, opts.cache_root()), weights_only=True)
    assert entry["test_accuracy"] > 0.95 and entry["n_test"] == 100 and entry["trained_on"].startswith("MNIST")
    x, y = data.floor(0)                       # held-out images, with their labels
    names = ["fd_domain", "kid_domain", "class_acc", "classes_covered", "precision_domain", "recall_domain"]
    r = evaluate(names, x, y, data, 0, opts)
    assert r.values["class_acc"] > 0.95 and r.values["classes_covered"] == 10
    assert r.sources["fd_domain"]["extractor"] == "domain-classifier:mnist"
    ones = evaluate(names, x[y == 1], y[y == 1] * 0, data, 0, opts).values       # one class, wrong labels
    assert ones["classes_covered"] == 1 and ones["class_acc"] < 0.05
    assert ones["fd_domain"] > 10 * r.values["fd_domain"] and ones["recall_domain"] < r.values["recall_domain"]


def test_cifar10_classifier_reads_colour(roots, opts):
    """The ten classes differ only in hue at equal brightness: a grey reader would be at chance."""
    data = build_data({"name": "cifar10", "root": str(roots[0])})
    entry = torch.load(classifier_file(data, opts.cache_root()), weights_only=True)
    assert entry["mode"] == "rgb" and entry["in_channels"] == 3
    assert entry["test_accuracy"] > 0.95
    x, y = data.floor(0)
    assert evaluate(["class_acc"], x, y, data, 0, opts).values["class_acc"] > 0.95


def test_missing_encoder_hint_repeats_the_data_root(roots, tmp_path):
    from bench.config import ConfigError, compose_config
    from bench.tasks import prepare

    with pytest.raises(ConfigError, match=rf"make it with: python -m bench.run task=pretrain_encoder data=mnist "
                                          rf"data.root={roots[0]} results_dir={tmp_path}$"):
        prepare(compose_config(["method=drifting", "data=mnist", f"data.root={roots[0]}", f"results_dir={tmp_path}"]))


def test_run_records_domain_metrics_on_cifar10(roots, results, tmp_path):
    import json

    from tests.conftest import run_bench

    metrics = "[fd_domain,kid_domain,coverage_domain,class_acc,classes_covered]"
    run_bench("method=flow", "data=cifar10", f"data.root={roots[0]}", "train.steps=3", "train.batch_size=32",
              "train.progress=false", "eval.num_samples=60", "eval.batch_size=60", "eval.nfe=[2]",
              "eval.latency_repeats=1", f"eval.metrics={metrics}", f"eval.cache_dir={tmp_path / 'cache'}",
              results=results)
    record = json.loads((results / "records" / "flow-cifar10-mlp-s0.json").read_text())
    point = record["evals"][0]
    assert set(metrics.strip("[]").split(",")) <= set(point["metrics"])
    assert point["metrics"]["fd_domain"] > 0 and point["metrics"]["class_acc"] is None     # unconditional flow
    src = point["metric_sources"]["fd_domain"]
    assert src["extractor"] == "domain-classifier:cifar10" and src["classifier_trained_on"].startswith("CIFAR-10")
