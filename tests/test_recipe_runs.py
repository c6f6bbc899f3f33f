"""The recipes end to end on CPU at a tiny shape: a 3-class ImageFolder and a random AutoencoderKL made
here, the latent cache, the recipes' own encoders pre-trained for 2 steps (latent MAE through the VAE,
pixel MAE), then 2 training steps of ``recipe=drifting_ablation``, ``recipe=flow_latent_b2`` and
``recipe=drifting_pixel_b16`` (with a tiny random ConvNeXt-V2), evaluated and recorded.

The tiny shape is the recipe plus overrides (README "Recipes"): ``model.depth=1 model.hidden=64
model.heads=4`` and a few classes, samples and steps; everything else is the recipe's."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bench.config import compose_config
from bench.errors import ConfigError
from bench.tasks import execute, prepare
from tests.imagenet_fixtures import tiny_vae, write_imagefolder

pytestmark = pytest.mark.slow

RES = ["data.resolution=32", "data.any_resolution=true", "data.num_classes=3", "data.num_workers=0"]
TINY_MODEL = ["model.depth=1", "model.hidden=64", "model.heads=4", "model.n_context_tokens=2",
              "model.n_style_tokens=2", "model.style_codebook=4"]
TINY_DRIFT = ["method.classes_per_step=2", "method.gen_per_class=4", "method.pos_per_class=4",
              "method.unc_per_class=2", "method.class_queue=8", "method.global_queue=16"]
TINY_TRAIN = ["train.steps=2", "train.batch_size=8", "train.warmup_steps=1", "train.progress=false",
              "train.log_every=1", "device=cpu"]
TINY_EVAL = ["eval.num_samples=6", "eval.batch_size=6", "eval.metrics=[]", "eval.latency_repeats=0"]
TINY_ENCODER = ["encoder.width=8", "encoder.layers=[1,1,1,1]", "encoder.train.steps=2", "encoder.train.batch_size=4",
                "encoder.train.warmup_steps=0", "encoder.train.progress=false", "encoder.eval_samples=4"]


def run(*overrides):
    return execute(prepare(compose_config(list(overrides))))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("recipes")
    root, vae = write_imagefolder(base / "imagenet"), tiny_vae(base / "vae")
    results = base / "results"
    common = [f"data.root={root}", *RES, f"results_dir={results}"]
    run("task=cache_latents", "data=imagenet_latent", f"data.vae={vae}", *common, "cache.batch_size=8")
    for enc in ("latent_256", "latent_640"):                  # the latent recipes' encoders, VAE-encoded crops
        run("task=pretrain_encoder", f"encoder={enc}", f"encoder.vae={vae}", "data=imagenet_pixel", *common,
            *TINY_ENCODER, "encoder.cls_ft_steps=1", "encoder.cls_warmup=1")
    run("task=pretrain_encoder", "encoder=pixel_640", "data=imagenet_pixel", *common, *TINY_ENCODER,
        "encoder.cls_ft_steps=1", "encoder.cls_warmup=1")
    latent = [f"data.root={root}", f"data.vae={vae}", *RES, f"results_dir={results}"]
    return {"root": root, "vae": vae, "results": results, "base": base, "latent": latent,
            "pixel": [f"data.root={root}", *RES, f"results_dir={results}"]}


def test_latent_encoder_takes_vae_latents_and_names_its_vae(world):
    side = json.loads((world["results"] / "encoders" / "latent_256-imagenet_pixel-s0.json").read_text())
    assert side["config"]["vae"]["ref"] == str(world["vae"]) and len(side["config"]["vae"]["sha256"]) == 64
    import torch
    enc = torch.load(world["results"] / "encoders" / "latent_256-imagenet_pixel-s0.pt", weights_only=False)
    assert enc["in_channels"] == 4 and enc["data"]["shape"] == [4, 4, 4]


def test_drifting_ablation_recipe_trains_samples_and_records_its_geometry(world):
    rec_path = run("recipe=drifting_ablation", *world["latent"], *TINY_MODEL, *TINY_DRIFT, *TINY_TRAIN, *TINY_EVAL)
    record = json.loads(rec_path.read_text())
    assert record["run_id"] == "drifting_ablation-s0" and record["train"]["status"] == "finished"
    assert [e["guidance"] for e in record["evals"]] == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]       # the release's grid
    g = record["geometry"]
    assert (g["shape"], g["world_size"], g["N_c_per_rank"], g["batch_per_rank"]) == ("2 x 4 x 4 x 2", 1, 2, 8)
    assert g["seen"] == {"real": 16, "generated": 16} and g["epochs"] == {"real": round(16 / 18, 3),
                                                                          "generated": round(16 / 18, 3)}
    prov = g["provenance"]
    assert prov["dataset_size"] == 18 and len(prov["files_sha256"]) == len(prov["vae_sha256"]) == 64
    assert prov["encoder_sha256"] == json.loads((world["results"] / "encoders" /
                                                 "latent_256-imagenet_pixel-s0.json").read_text())["sha256"]
    run_dir = world["results"] / "runs" / "drifting_ablation-s0"
    assert np.load(run_dir / "samples_ema_0.999_nfe1_g1.npy").shape == (6, 3, 32, 32)      # decoded by the VAE


def test_flow_baseline_recipe_trains_and_samples(world):
    rec_path = run("recipe=flow_latent_b2", *world["latent"], *TINY_MODEL, *TINY_TRAIN, *TINY_EVAL,
                   "eval.nfe=[2]", "eval.guidance=[1.0]")
    record = json.loads(rec_path.read_text())
    assert record["run_id"] == "flow_latent_b2-s0" and record["evals"][0]["nfe_measured"] == 2
    assert record["geometry"]["seen"] == {"real": 16} and "N_c" not in record["geometry"]


def test_pixel_recipe_trains_with_convnext_features(world):
    from transformers import ConvNextV2Config, ConvNextV2Model
    folder = world["base"] / "convnext"
    ConvNextV2Model(ConvNextV2Config(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16])).save_pretrained(folder)
    rec_path = run("recipe=drifting_pixel_b16", *world["pixel"], *TINY_MODEL, *TINY_DRIFT, *TINY_TRAIN, *TINY_EVAL,
                   f"method.convnext={folder}", "eval.guidance=[1.0]")
    record = json.loads(rec_path.read_text())
    assert record["train"]["status"] == "finished"
    assert len(record["config"]["method"]["convnext_sha256"]) == 64
    log = [json.loads(r) for r in (world["results"] / "runs" / "drifting_pixel_b16-s0" / "train_log.jsonl")
           .read_text().splitlines()]
    assert np.isfinite(log[-1]["loss"]) and record["geometry"]["provenance"]["convnext"] == str(folder)


def test_a_missing_encoder_names_the_command_that_makes_it(world, tmp_path):
    cache = world["results"] / "latents" / "train-32-sample"
    overrides = [o for o in world["latent"] if not o.startswith("results_dir=")]
    with pytest.raises(ConfigError) as e:
        prepare(compose_config(["recipe=drifting_ablation", *overrides, f"data.cache={cache}", f"results_dir={tmp_path}"]))
    msg = str(e.value)
    assert "\n" not in msg and "latent_256-imagenet_pixel-s0.pt not found; make it with: python -m bench.run " \
        f"task=pretrain_encoder data=imagenet_pixel data.root={world['root']}" in msg
    assert msg.endswith(f"encoder=latent_256 results_dir={tmp_path}") and "data.cache" not in msg
