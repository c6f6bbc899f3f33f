"""``bench.perf.sampling`` at tiny size: the per-mode timing JSON and the toy before/after comparison."""
import json

from bench.perf import sampling


def test_sampling_perf_writes_latency_and_throughput_per_mode(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert sampling.main(["recipe=drifting_ablation", "--tiny", "--device", "cpu", "--precision", "fp32", "--batch", "4",
                          "--n", "8", "--repeats", "2", "--modes", "eager", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    t = r["modes"]["eager"]
    assert (r["kind"], r["recipe"], r["nfe"], r["batch"]) == ("sampling", "drifting_ablation", 1, 4)
    assert t["throughput_images_per_second"]["n"] == 2 and t["latency_batch1"]["n"] == 2
    assert "batch-1 latency" in capsys.readouterr().out
    assert sampling.main(["recipe=drifting_ablation", "--tiny", "--device", "cpu", "--modes", "warp", "--n", "4",
                          "--batch", "4", "--out", str(out)]) == 2
    assert "--modes: unknown 'warp'" in capsys.readouterr().err


def test_toy_comparison_times_the_old_loop_and_the_keyed_noise_in_one_run(capsys):
    assert sampling.main(["toy", "--n", "256", "--repeats", "2"]) == 0
    text = capsys.readouterr().out
    assert "noise: before (one generator per image)" in text and "generate: before" in text


def test_the_before_reference_draws_the_old_numbers():
    import torch
    seeds = torch.tensor([5, 9])
    old = sampling.per_image_loop(seeds, (3,), "cpu")
    assert torch.equal(old[1], torch.randn(1, 3, generator=torch.Generator().manual_seed(9))[0])
