"""Sampling: measured NFE, per-image seeds, timing fields."""
import pytest
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


def test_throughput_and_latency_are_medians_of_timed_repeats_and_decoding_is_timed_apart():
    from bench.sampling_fast import SamplingOptions
    method, net = _drifting()
    plain = generate(method, net, n=24, seed=0, nfe=1, guidance=1.0, batch_size=8, latency_repeats=3)
    out = generate(method, net, n=24, seed=0, nfe=1, guidance=1.0, batch_size=8, latency_repeats=3,
                   options=SamplingOptions(throughput_repeats=5), decode=lambda x: 2 * x)
    t = out.timing
    assert t["throughput_images_per_second"]["n"] == 5 and t["latency_batch1"]["n"] == 3
    assert t["throughput_images_per_second"]["min"] <= t["throughput_images_per_second"]["median"] \
        <= t["throughput_images_per_second"]["max"]
    assert t["latency_batch1_seconds"] == t["latency_batch1"]["median"] > 0
    assert t["decode_seconds"] > 0 and t["total_seconds_per_image"] > t["seconds_per_image"]
    assert plain.timing["decode_seconds"] is None and out.nfe_measured == 1.0      # repeats are not counted
    torch.testing.assert_close(out.samples, 2 * plain.samples)


def test_batch1_latency_with_the_decode_includes_it_and_the_sampling_only_latency_does_not():
    import time
    method, net = _drifting()
    decoded = []

    def slow_decode(x):                 # a decode of known minimum duration: 50 ms
        decoded.append(len(x))
        time.sleep(0.05)
        return 2 * x
    t = generate(method, net, n=8, seed=0, nfe=1, guidance=1.0, batch_size=8, latency_repeats=3,
                 decode=slow_decode).timing
    assert decoded == [8, 8, 1, 1, 1, 1]       # warm-up and the pass at batch 8; batch 1: warm-up + 3 repeats
    assert t["latency_batch1_total_seconds"] - t["latency_batch1_seconds"] >= 0.05 and t["latency_batch1_seconds"] > 0
    plain = generate(method, net, n=8, seed=0, nfe=1, guidance=1.0, batch_size=8, latency_repeats=3).timing
    assert plain["latency_batch1_total_seconds"] is None and plain["latency_batch1_seconds"] > 0


def test_sampling_in_bf16_is_recorded_and_close_to_fp32():
    from bench.sampling_fast import SamplingOptions
    method, net = _drifting()
    fp32 = generate(method, net, n=32, seed=5, nfe=1, guidance=1.0, batch_size=32, latency_repeats=0)
    bf16 = generate(method, net, n=32, seed=5, nfe=1, guidance=1.0, batch_size=32, latency_repeats=0,
                    options=SamplingOptions(precision="bf16"))
    assert (fp32.timing["precision"], bf16.timing["precision"]) == ("float32", "autocast bf16")
    assert not torch.equal(fp32.samples, bf16.samples)
    torch.testing.assert_close(bf16.samples, fp32.samples, rtol=0.05, atol=0.02)


def test_cuda_graphs_are_refused_off_cuda_with_one_line():
    from bench.sampling_fast import SamplingOptions
    method, net = _drifting()
    with pytest.raises(ValueError, match="eval.cuda_graphs needs a CUDA device, this run samples on cpu"):
        generate(method, net, n=4, seed=0, nfe=1, guidance=1.0, batch_size=4,
                 options=SamplingOptions(cuda_graphs=True))


@pytest.mark.slow
def test_a_compiled_sampler_gives_the_eager_samples():
    from bench.sampling_fast import SamplingOptions
    method, net = _drifting()
    eager = generate(method, net, n=40, seed=3, nfe=1, guidance=1.0, batch_size=16, latency_repeats=1)
    compiled = generate(method, net, n=40, seed=3, nfe=1, guidance=1.0, batch_size=16, latency_repeats=1,
                        options=SamplingOptions(compile=True))
    assert compiled.timing["compile"] and compiled.nfe_measured == 1.0
    torch.testing.assert_close(compiled.samples, eager.samples, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replays_give_the_eager_samples():
    from bench.sampling_fast import SamplingOptions
    method, net = _drifting()
    net = net.cuda()
    eager = generate(method, net, n=40, seed=3, nfe=1, guidance=1.0, batch_size=16, latency_repeats=2)
    graphed = generate(method, net, n=40, seed=3, nfe=1, guidance=1.0, batch_size=16, latency_repeats=2,
                       options=SamplingOptions(cuda_graphs=True))
    torch.testing.assert_close(graphed.samples, eager.samples)
