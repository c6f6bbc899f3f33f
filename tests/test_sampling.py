"""Sampling: measured NFE, per-image seeds, timing fields."""
import torch

from bench.sampling import NFECounter, generate
from methods.backbones import build_backbone
from methods.drifting.method import Drifting


def _drifting():
    method = Drifting(Drifting.Config())
    torch.manual_seed(0)
    from methods.base import DataSpec
    spec = DataSpec("t", (2,))
    net = method.build(build_backbone({"name": "mlp", "hidden": 32, "depth": 2}, method.backbone_io(spec)), spec)
    return method, net


def test_nfe_is_counted_not_declared():
    method, net = _drifting()
    out = generate(method, net, n=50, seed=0, nfe=1, guidance=1.0, batch_size=16, latency_repeats=1)
    assert out.nfe_measured == 1.0 and out.samples.shape == (50, 2)
    counter = NFECounter(net)
    counter(torch.zeros(3, 32))
    counter(torch.zeros(3, 32))
    assert counter.rows == 6


def test_sample_i_depends_only_on_its_seed():
    method, net = _drifting()
    a = generate(method, net, n=40, seed=100, nfe=1, guidance=1.0, batch_size=7, latency_repeats=0).samples
    b = generate(method, net, n=40, seed=100, nfe=1, guidance=1.0, batch_size=40, latency_repeats=0).samples
    c = generate(method, net, n=10, seed=130, nfe=1, guidance=1.0, batch_size=3, latency_repeats=0).samples
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[30:], c)


def test_timing_fields():
    method, net = _drifting()
    t = generate(method, net, n=20, seed=0, nfe=1, guidance=1.0, batch_size=8, latency_repeats=2).timing
    assert t["batch_size"] == 8 and t["device"] == "cpu" and t["sample_seconds"] > 0
    assert t["images_per_second"] > 0 and t["latency_batch1_seconds"] > 0
