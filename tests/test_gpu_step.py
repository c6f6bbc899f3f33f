"""``bench.perf.gpu_step`` at tiny size on the CPU: drifting and its matched baselines on the same DiT."""
import json

import pytest

from bench.perf import gpu_step

TINY = ["--tiny", "--device", "cpu", "--steps", "2", "--warmup", "1"]


def _run(tmp_path, name, *args):
    out = tmp_path / f"{name}.json"
    assert gpu_step.main([*TINY, "--out", str(out), *args]) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
def test_gpu_step_measures_drifting_and_the_matched_baselines_at_tiny_size(tmp_path, capsys):
    drift = _run(tmp_path, "drift", "recipe=drifting_ablation", "--batch", "16")
    flow = _run(tmp_path, "flow", "recipe=flow_latent_b2", "--batch", "16")
    flow2 = _run(tmp_path, "flow2", "recipe=flow_latent_b2", "--batch", "32")
    diff = _run(tmp_path, "diff", "recipe=diffusion_latent_b2", "--batch", "16")
    printed = capsys.readouterr().out
    assert "MFU:" in printed and "breakdown of an eager step" in printed and "measured matmul peak" in printed
    for r in (drift, flow, diff):
        assert r["images_per_step"] == 16 and r["images_per_second"] > 0 and r["step_seconds"]["n"] == 2
        assert set(r["breakdown_seconds"]) == set(gpu_step.PHASES)
        assert all(v >= 0 for v in r["breakdown_seconds"].values())
        assert r["breakdown_seconds"]["generator_forward"] > 0 and r["breakdown_seconds"]["generator_backward"] > 0
        assert r["flops_per_step"]["generator"] > 0 and r["mfu_measured"] > 0 and r["peak_tflops_table"] is None
        assert r["recipe_global_batch"] == 8                 # the tiny recipes' global step: 2 x 4 generated, or 8
        assert r["gpu_hours_to_full"] == pytest.approx(r["recipe_steps"] * 8 / r["images_per_second"] / 3600)
    assert (drift["recipe_steps"], flow["recipe_steps"], diff["recipe_steps"]) == (30_000, 400_000, 400_000)
    assert (drift["release_accelerators"], flow["release_accelerators"]) == (64, None)
    assert (drift["geometry"], flow["geometry"]) == ("4 x 4 x 4 x 2", "batch 16")       # N_c = 16 / N_neg
    # The encoder runs only for drifting; the baselines' FLOPs are all the generator's and linear in the batch.
    assert drift["flops_per_step"]["encoder"] > 0 and drift["breakdown_seconds"]["encoder_forward"] > 0
    assert flow["flops_per_step"]["encoder"] == 0 and flow["breakdown_seconds"]["encoder_forward"] == 0
    assert flow["flops_per_step"]["generator"] == flow["flops_per_step"]["total"]
    assert flow2["flops_per_step"]["total"] == 2 * flow["flops_per_step"]["total"]
    assert drift["model_params"] != flow["model_params"]       # drifting: y, alpha, style; flow: t, y


def test_gpu_step_refuses_a_batch_that_is_not_whole_classes(tmp_path, capsys):
    assert gpu_step.main([*TINY, "recipe=drifting_ablation", "--batch", "10", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bench.perf.gpu_step: error: --batch 10 must be a multiple of method.gen_per_class=4 (N_c x N_neg)"]
