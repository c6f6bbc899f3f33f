"""The ImageNet recipes (``bench/conf/recipe/``): each composes from one key with every value of PAPER.md
Table 8 as the release sets it, its generator has the paper's parameter count (``bench.params recipe=``
reads the run's composition), command-line overrides win, and the run id names the recipe."""
from __future__ import annotations

import pytest

from bench import params
from bench.config import TopConfig, compose_config, group_choices, plain_config, run_id_of

# Table 8 as the release's configs set it (configs/gen/*.yaml): N_pos of B/2 is the release's 64 (the
# paper prints 128, PAPER.md 11.2 (d)); train.batch_size is the release's push_per_step x hosts.
COMMON = {"method.loss": "production", "method.conditional": True, "method.cfg": True, "method.gen_per_class": 64,
          "method.class_queue": 128, "method.global_queue": 1000, "method.temperatures": [0.02, 0.05, 0.2],
          "method.alpha_min": 1.0, "method.alpha_max": 4.0, "method.patch_sizes": [2, 4], "method.noise_dim": None,
          "train.beta1": 0.9, "train.beta2": 0.95, "train.schedule": "constant", "train.grad_clip": 2.0,
          "train.ema": [0.999]}
PIXEL_B16 = {"model": "drift_b16", "data": "imagenet_pixel", "encoder": "pixel_640", "method.classes_per_step": 128,
             "method.pos_per_class": 128, "method.unc_per_class": 32, "method.alpha_exponent": 5.0,
             "method.no_cfg_frac": 0.0, "method.convnext": "facebook/convnextv2-base-22k-224", "data.augment": True,
             "train.lr": 2e-4, "train.weight_decay": 0.01, "train.warmup_steps": 10000, "train.steps": 100000,
             "train.batch_size": 4096, "model.attn_fp32": True, "model.remat": True}
TABLE8 = {
    "drifting_ablation": {"model": "drift_b2", "data": "imagenet_latent", "encoder": "latent_256",
                          "method.classes_per_step": 64, "method.pos_per_class": 64, "method.unc_per_class": 16,
                          "method.alpha_exponent": 3.0, "method.no_cfg_frac": 0.0, "method.convnext": None,
                          "train.lr": 2e-4, "train.weight_decay": 0.01, "train.warmup_steps": 5000,
                          "train.steps": 30000, "train.batch_size": 1024, "model.attn_fp32": True},
    "drifting_latent_b2": {"model": "drift_b2", "data": "imagenet_latent", "encoder": "latent_640",
                           "method.classes_per_step": 128, "method.pos_per_class": 64, "method.unc_per_class": 32,
                           "method.alpha_exponent": 5.0, "method.no_cfg_frac": 0.0, "method.convnext": None,
                           "train.lr": 4e-4, "train.weight_decay": 0.0, "train.warmup_steps": 10000,
                           "train.steps": 200000, "train.batch_size": 4096, "model.attn_fp32": False},
    "drifting_latent_l2": {"model": "drift_l2", "data": "imagenet_latent", "encoder": "latent_640",
                           "method.classes_per_step": 128, "method.pos_per_class": 64, "method.unc_per_class": 32,
                           "method.alpha_exponent": 3.0, "method.no_cfg_frac": 0.5, "method.convnext": None,
                           "train.lr": 4e-4, "train.weight_decay": 0.01, "train.warmup_steps": 10000,
                           "train.steps": 200000, "train.batch_size": 2048, "model.attn_fp32": False},
    "drifting_pixel_b16": PIXEL_B16,
    "drifting_pixel_l16": {**PIXEL_B16, "model": "drift_l16", "train.lr": 4e-4},
}
# The generators' sizes: PAPER.md Table 8 (drifting), the baselines' papers (DiT-B/2 and SiT-B/2 130M,
# MeanFlow-B/2 131M); the baselines use the drifting trunk with a time embedding.
PARAMS = {"drifting_ablation": 133e6, "drifting_ablation_1gpu": 133e6, "drifting_latent_b2": 133e6,
          "drifting_latent_l2": 463e6, "drifting_pixel_b16": 134e6, "drifting_pixel_l16": 464e6,
          "flow_latent_b2": 130e6, "diffusion_latent_b2": 130e6, "meanflow_latent_b2": 131e6}


def composed(*overrides: str) -> dict:
    return plain_config(compose_config(list(overrides)))


def value(plain: dict, key: str):
    if "." not in key:
        return plain["choices"][key]
    section, name = key.split(".")
    return plain[section][name]


@pytest.mark.parametrize("recipe", sorted(TABLE8))
def test_recipe_sets_every_table8_value_as_the_release(recipe):
    plain = composed(f"recipe={recipe}")
    want = {**COMMON, **TABLE8[recipe], "method": "drifting"}
    got = {k: value(plain, k) for k in want}
    assert got == want
    assert plain["choices"]["recipe"] == recipe
    assert plain["method"]["encoder_path"].endswith(f"/encoders/{want['encoder']}-imagenet_pixel-s0.pt")


def test_single_gpu_variant_is_the_forks_geometry():
    plain = composed("recipe=drifting_ablation_1gpu")
    m, t = plain["method"], plain["train"]
    assert (m["classes_per_step"], m["gen_per_class"], m["pos_per_class"], m["unc_per_class"]) == (8, 16, 32, 8)
    assert (m["class_queue"], m["global_queue"], t["batch_size"], t["lr"], t["steps"]) == (64, 512, 128, 5e-5, 30000)
    assert plain["choices"]["model"] == "drift_b2" and m["alpha_exponent"] == 3.0     # the rest: the ablation's


@pytest.mark.parametrize("recipe,method", [("flow_latent_b2", "flow"), ("diffusion_latent_b2", "diffusion"),
                                           ("meanflow_latent_b2", "meanflow")])
def test_baseline_recipes_share_the_drifting_trunk_and_data(recipe, method):
    plain = composed(f"recipe={recipe}")
    assert plain["choices"]["method"] == method and plain["method"]["conditional"] is True
    assert (plain["choices"]["model"], plain["choices"]["data"]) == ("drift_b2", "imagenet_latent")
    assert plain["train"]["batch_size"] == 256 and plain["train"]["ema"] == [0.9999]


@pytest.mark.parametrize("recipe", sorted(PARAMS))
def test_generator_parameter_count_within_one_percent_of_the_paper(recipe, capsys):
    assert params.main([f"recipe={recipe}"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert abs(int(out[-1]) - PARAMS[recipe]) / PARAMS[recipe] < 0.01, (recipe, out[-1])
    assert f"interface of recipe '{recipe}'" in out[0]


def test_flow_recipe_counts_the_time_conditioned_interface(capsys):
    assert params.main(["recipe=flow_latent_b2"]) == 0
    assert "conditioning t, y" in capsys.readouterr().out


def test_command_line_overrides_win_and_the_run_id_names_the_recipe():
    cfg = compose_config(["recipe=drifting_ablation", "model=drift_l2", "train.lr=1e-3", "method.gen_per_class=8",
                          "model.depth=1"])
    plain = plain_config(cfg)
    assert plain["choices"]["model"] == "drift_l2" and plain["model"]["depth"] == 1
    assert plain["train"]["lr"] == 1e-3 and plain["method"]["gen_per_class"] == 8
    assert plain["method"]["pos_per_class"] == 64                        # the recipe's, where not overridden
    choices = group_choices(cfg)
    assert run_id_of(choices, TopConfig(seed=2)) == "drifting_ablation-s2"
    assert run_id_of(choices, TopConfig(seed=0, tag="t1")) == "drifting_ablation-s0-t1"
    assert run_id_of(group_choices(compose_config(["method=flow"])), TopConfig()) == "flow-ring8-mlp-s0"


def test_record_geometry_splits_global_counts_over_ranks_and_counts_epochs_as_the_paper():
    from bench.geometry import batch_geometry

    class Cache:                                            # a latent cache source: its manifest names it
        n, manifest = 1_281_167, {"files_sha256": "f" * 64, "vae_sha256": "v" * 64, "count": 1_281_167}
    method = {"name": "drifting", "conditional": True, "cfg": True, "classes_per_step": 64, "gen_per_class": 64,
              "pos_per_class": 64, "unc_per_class": 16, "class_queue": 128, "global_queue": 1000,
              "encoder_sha256": "e" * 64}
    g = batch_geometry({"train": {"batch_size": 1024}, "method": method}, Cache(), world=16, steps=30000)
    assert (g["shape"], g["N_c_per_rank"], g["batch_per_rank"], g["generated_per_step"]) == ("64 x 64 x 64 x 16", 4,
                                                                                             64, 4096)
    assert g["seen"] == {"real": 30000 * 1024, "generated": 30000 * 4096}
    assert 95.9 < g["epochs"]["generated"] < 96.0                        # PAPER.md 1.5: 30k x 4096 / 1.28M ~ 96
    assert g["provenance"]["vae_sha256"] == "v" * 64 and g["provenance"]["encoder_sha256"] == "e" * 64
    flow = batch_geometry({"train": {"batch_size": 256}, "method": {"name": "flow"}}, Cache(), world=8, steps=10)
    assert flow["batch_per_rank"] == 32 and flow["seen"] == {"real": 2560} and "N_c" not in flow
