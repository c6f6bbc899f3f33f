"""The domain classifier: trained once and cached with its accuracy, registered with torch-fidelity, and
the class and stacked-mode metrics on sample sets with known answers."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset

from bench.data import build_data
from bench.data.digits import digits_arrays
from bench.metrics import MetricOptions, evaluate
from bench.metrics.classes import digit_frequencies
from bench.metrics.domain import FIDELITY_NAME, classifier_file
from bench.metrics.fidelity import to_uint8_rgb


@pytest.fixture(scope="module")
def opts(tmp_path_factory):
    return MetricOptions(cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def digits():
    return build_data({"name": "digits"})


def test_classifier_is_cached_with_its_held_out_accuracy(opts, digits):
    path = classifier_file(digits, opts.cache_root())
    written = path.stat().st_mtime_ns
    assert classifier_file(digits, opts.cache_root()) == path and path.stat().st_mtime_ns == written   # not retrained
    entry = torch.load(path, weights_only=True)
    assert entry["test_accuracy"] > 0.95 and entry["n_test"] == 360
    with pytest.raises(ValueError, match="no domain classifier for data 'ring8'"):
        classifier_file(build_data({"name": "ring8"}), opts.cache_root())


def test_class_metrics_on_real_digits(opts, digits):
    x, y = digits.reference(0)
    names = ["fd_domain", "class_acc", "classes_covered", "coverage_domain"]
    real = evaluate(names, x, y, digits, 0, opts)
    assert real.values["class_acc"] > 0.97 and real.values["classes_covered"] == 10
    assert real.values["fd_domain"] < 1e-6 and real.values["coverage_domain"] == 1.0
    src = real.sources["fd_domain"]
    assert src["extractor"] == "domain-classifier:digits" and src["classifier_test_accuracy"] > 0.95
    assert len(src["weights_hash"]) == 64 and src["reference_key"]
    only_ones = x[y == 1]
    ones = evaluate(names, only_ones, torch.zeros(len(only_ones), dtype=torch.long), digits, 0, opts).values
    assert ones["class_acc"] < 0.05 and ones["classes_covered"] <= 2
    assert ones["fd_domain"] > 100 * max(real.values["fd_domain"], 1e-3)


def test_class_acc_explains_unconditional_samples(opts, digits):
    x, _ = digits.reference(0)
    r = evaluate(["class_acc", "classes_covered"], x[:50], None, digits, 0, opts)
    assert r.values["class_acc"] is None
    assert "unconditional" in r.sources["class_acc"]["not_applicable"]
    assert r.values["classes_covered"] is not None


def test_reference_statistics_are_cached(opts, digits):
    x, y = digits.reference(0)
    first = evaluate(["fd_domain", "kid_domain"], x[:200], y[:200], digits, 0, opts)
    key = first.sources["fd_domain"]["reference_key"]
    assert (opts.cache_root() / "reference" / f"{key}.pt").exists()
    second = evaluate(["fd_domain", "kid_domain"], x[:200], y[:200], digits, 0, opts)
    assert second.values == first.values and second.sources["fd_domain"]["reference_key"] == key


def test_stacked_modes_on_constructed_samples(opts):
    data = build_data({"name": "stacked_digits", "n_train": 100})
    x_tr, y_tr, _, _ = digits_arrays()
    picks = torch.cat([torch.nonzero(y_tr == d)[:10, 0] for d in range(10)])      # 10 images of each digit
    same = x_tr[picks].repeat(1, 3, 1, 1)                                         # (d, d, d) triples
    r = evaluate(["stacked_modes", "stacked_kl"], same, None, data, 500, opts)
    assert r.values["stacked_modes"] == 10
    f = digit_frequencies()
    expected = sum(0.1 * math.log(0.1 / f[d].item() ** 3) for d in range(10))
    assert r.values["stacked_kl"] == pytest.approx(expected, rel=1e-6)
    assert r.sources["stacked_modes"]["classifier_test_accuracy"] > 0.95
    ref_x, _ = data.reference(2000)
    many = evaluate(["stacked_modes"], ref_x, None, data, 500, opts).values["stacked_modes"]
    assert 800 < many <= 1000          # 2,000 random triples cover about 1000 (1 - e^-2) = 865 modes


class Uint8Images(Dataset):
    def __init__(self, x):
        self.x = to_uint8_rgb(x, (-1.0, 1.0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def test_registered_with_torch_fidelity(opts, digits):
    import torch_fidelity

    x, y = digits.reference(0)
    ours = evaluate(["fd_domain"], x[:300], y[:300], digits, 0, opts).values["fd_domain"]
    theirs = torch_fidelity.calculate_metrics(
        input1=Uint8Images(x[:300]), input2=Uint8Images(x), fid=True, feature_extractor=FIDELITY_NAME,
        feature_extractor_weights_path=str(classifier_file(digits, opts.cache_root())), cuda=False,
        cache=False, verbose=False)["frechet_inception_distance"]
    assert ours == pytest.approx(theirs, rel=1e-5)


def test_cache_key_names_what_changes_the_weights():
    from bench.metrics.domain import Recipe, weights_key

    data = (torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    key = weights_key(Recipe(), "SmallCNN", 10, "cpu", data)
    assert key == weights_key(Recipe(), "SmallCNN", 10, "cpu", data)
    assert key != weights_key(Recipe(), "SmallCNN", 10, "cuda:0", data)           # CUDA kernels differ
    assert key != weights_key(Recipe(seed=1), "SmallCNN", 10, "cpu", data)
    assert key != weights_key(Recipe(), "SmallCNN+stem_pool", 10, "cpu", data)
    assert key != weights_key(Recipe(), "SmallCNN", 10, "cpu", (data[0] + 1, data[1]))
    import bench.metrics.domain as dom
    real = dom.torch.__version__
    try:
        dom.torch.__version__ = "0.0.1"
        assert key != weights_key(Recipe(), "SmallCNN", 10, "cpu", data)       # another torch release
    finally:
        dom.torch.__version__ = real


def test_cache_writes_leave_a_concurrent_writers_temporary_file_alone(tmp_path):
    """Two jobs training the same classifier at once: each writes its own temporary file and renames it."""
    from bench.metrics.domain import _save_atomic

    path = tmp_path / "domain" / "digits-abc.pt"
    path.parent.mkdir()
    theirs = [path.with_suffix(".tmp"), path.with_name(f".{path.name}.tmp")]
    for t in theirs:
        t.write_bytes(b"half-written by another job")
    _save_atomic(path, {"w": torch.ones(3)})
    assert torch.load(path, weights_only=True)["w"].tolist() == [1.0, 1.0, 1.0]
    assert all(t.read_bytes() == b"half-written by another job" for t in theirs)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name] + [t.name for t in theirs])
