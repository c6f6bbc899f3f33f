"""``bench.perf.recipe_steps`` runs a recipe's real training step on synthetic data of its shape (tiny here)."""
from __future__ import annotations

from bench.perf import recipe_steps


def test_recipe_steps_times_a_drifting_and_a_baseline_recipe_at_tiny_size(capsys):
    assert recipe_steps.main(["drifting_ablation", "flow_latent_b2", "--tiny", "--steps", "1", "--warmup", "0",
                              "--device", "cpu", "--ranks", "2"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("recipe") and "2 rank(s)" in rows[0]
    drift, flow = (r.split() for r in rows[1:3])
    assert drift[0] == "drifting_ablation" and drift[2:7] == ["1", "x", "4", "x", "4"]   # N_c 2 / 2 ranks
    assert flow[0] == "flow_latent_b2" and flow[2:4] == ["batch", "4"] and float(flow[4]) > 0


def test_unknown_recipe_is_a_one_line_error(capsys):
    assert recipe_steps.main(["nope", "--tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "drifting_ablation" in err
