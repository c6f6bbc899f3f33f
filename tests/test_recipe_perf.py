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


def test_pixel_recipes_are_timed_with_their_uint8_host_queues_and_a_small_class_queue(tmp_path):
    import torch

    from bench.perf.synthetic import build, compose
    pixel = compose(["recipe=drifting_pixel_b16"])["method"]
    assert (pixel["queue_device"], pixel["queue_dtype"], pixel["class_queue"]) == ("cpu", "uint8", 8)
    assert compose(["recipe=drifting_pixel_b16", "method.class_queue=32"])["method"]["class_queue"] == 32
    assert compose(["recipe=drifting_latent_b2"])["method"]["class_queue"] == 128       # latents: the recipe's
    setup = build(["recipe=drifting_pixel_b16"], torch.device("cpu"), tiny=True)
    trainer = setup.trainer(tmp_path, torch.device("cpu"))
    trainer._step(trainer.net)
    queues = setup.method.cond_step.queues
    assert setup.method.cond_step.convnext is not None and setup.method.cond_step.encoder is not None
    for q in (queues.classes, queues.unconditional):
        assert q.buf.dtype == torch.uint8 and q.buf.device.type == "cpu" and q.buf.shape[2:] == (3, 64, 64)
    assert queues.classes.buf.shape[:2] == (10, 8)
