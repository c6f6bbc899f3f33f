"""Training on the tiny ImageFolder through the DataLoader: a run of the pixel path, and exact resume with
worker processes (a stopped run resumed from its checkpoint equals an uninterrupted one)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.config import compose_config
from bench.data import build_data
from bench.tasks import execute, prepare
from methods.backbones import build_backbone
from methods.harness.dist import DistEnv
from methods.harness.trainer import TrainConfig, Trainer
from methods.registry import method_class
from tests.conftest import ROOT, assert_stopped_run_resumes_exactly
from tests.imagenet_fixtures import write_imagefolder

PIXEL = ["data=imagenet_pixel", "data.num_classes=3", "data.resolution=16", "data.any_resolution=true",
         "data.num_workers=2", "model=dit_tiny", "train.batch_size=8", "train.progress=false"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_imagefolder(tmp_path_factory.mktemp("imagenet"))


def test_pixel_path_trains_samples_and_records(root, results):
    spec = prepare(compose_config([*PIXEL, f"data.root={root}", "method=drifting", "method.noise_dim=null",
                                   "train.steps=3", "eval.num_samples=6", "eval.batch_size=6", "eval.metrics=[]",
                                   "eval.latency_repeats=0", f"results_dir={results}"]))
    record = json.loads(execute(spec).read_text())
    assert record["train"]["status"] == "finished" and record["train"]["images_seen"] == 24
    assert record["config"]["data"]["root"] == str(root) and record["config"]["data"]["augment"] is True
    run = results / "runs" / spec.run_id
    assert np.load(run / "samples_ema_0.99_nfe1_g1.npy").shape == (6, 3, 16, 16)
    assert np.load(run / "reference.npy").shape == (6, 3, 16, 16)       # centre crops of val
    assert record["evals"][0]["timing"].get("decode_seconds") is None    # pixels: nothing to decode


def test_a_stopped_pixel_run_resumes_through_the_loader_exactly(root, tmp_path):
    model = OmegaConf.to_container(OmegaConf.load(ROOT / "bench/conf/model/dit_tiny.yaml"))

    def fit(run_dir, hooks=()):
        run_dir.mkdir(exist_ok=True)
        torch.manual_seed(0)
        data = build_data({"name": "imagenet_pixel", "root": str(root), "num_classes": 3, "resolution": 16,
                           "any_resolution": True, "num_workers": 2})
        cls = method_class("flow")
        method = cls(cls.Config())
        net = method.build(build_backbone(model, method.backbone_io(data.spec)), data.spec)
        trainer = Trainer(method, net, data, TrainConfig(steps=6, batch_size=4, progress=False, ckpt_every_steps=100),
                          run_dir, 0, DistEnv(), log=lambda s: None, hooks=hooks)
        return trainer, trainer.fit()

    assert_stopped_run_resumes_exactly(fit, tmp_path, stop_at=3)

@pytest.mark.slow
def test_latent_path_caches_trains_decodes_and_scores_against_an_adm_batch(root, tmp_path, results):
    """cache -> drifting and flow on the latents -> samples decoded by the cache's VAE -> FID against an
    ADM-layout reference batch (Inception with random weights, written here)."""
    from bench.metrics import MetricOptions
    from bench.metrics.inception import InceptionExtractor
    from bench.metrics.reference import statistics
    from tests.imagenet_fixtures import random_inception, tiny_vae

    vae, inception = tiny_vae(tmp_path / "vae"), random_inception(tmp_path / "inception.pt")
    data = [f"data.root={root}", "data.num_classes=3", "data.resolution=32", "data.any_resolution=true",
            f"data.vae={vae}", "data=imagenet_latent", f"results_dir={results}", "device=cpu"]
    execute(prepare(compose_config(["task=cache_latents", "cache.chunk=8", *data])))
    source = build_data({"name": "imagenet_latent", "root": str(root), "num_classes": 3, "resolution": 32,
                         "any_resolution": True, "vae": str(vae), "cache": str(results / "latents/train-32-sample")})
    images = source.reference(4)[0]
    features = InceptionExtractor(source, MetricOptions(inception_weights=str(inception)))(images)["features"]
    stats = statistics(features)
    uint8 = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.savez(tmp_path / "adm.npz", arr_0=uint8, mu=stats["mu"], sigma=stats["sigma"])

    train = ["model=dit_tiny", "train.steps=3", "train.batch_size=8", "train.progress=false", "train.eval_every=0",
             "eval.num_samples=3", "eval.batch_size=3", "eval.latency_repeats=0"]
    fid = ["eval.metrics=[fid]", f"eval.inception_weights={inception}", f"eval.reference={tmp_path / 'adm.npz'}"]
    no_metrics = ["eval.metrics=[]"]
    for method in (["method=drifting", "method.noise_dim=null", *fid], ["method=flow", "eval.nfe=[2]", *no_metrics]):
        spec = prepare(compose_config([*data, *train, *method]))
        assert spec.data.spec.shape == (4, 4, 4)
        record = json.loads(execute(spec).read_text())
        ev = record["evals"][0]
        t = ev["timing"]
        assert t["decode_seconds"] > 0
        assert t["total_seconds"] == pytest.approx(t["sample_seconds"] + t["decode_seconds"], abs=1e-5)
        samples = np.load(results / "runs" / spec.run_id / f"samples_ema_0.99_nfe{ev['nfe']}_g1.npy")
        assert samples.shape == (3, 3, 32, 32) and samples.min() >= -1 and samples.max() <= 1      # decoded images
    fid_run = json.loads((results / "records" / "drifting-imagenet_latent-dit_tiny-s0.json").read_text())["evals"][0]
    assert fid_run["metrics"]["fid"] > 0
    assert "ADM reference batch adm.npz" in fid_run["metric_sources"]["fid"]["reference"]


def test_the_train_task_lets_the_loader_workers_go_before_it_evaluates(root, results, monkeypatch):
    import multiprocessing

    from bench.tasks import train as train_task

    before, at_evaluation, evaluate_run = set(multiprocessing.active_children()), {}, train_task.evaluate_run

    def spy(ctx):                  # the real evaluation, after noting which training processes are still alive
        at_evaluation["workers"] = set(multiprocessing.active_children()) - before
        return evaluate_run(ctx)
    monkeypatch.setattr(train_task, "evaluate_run", spy)
    spec = prepare(compose_config([*PIXEL, f"data.root={root}", "method=flow", "train.steps=2", "eval.nfe=[1]",
                                   "eval.num_samples=2", "eval.batch_size=2", "eval.metrics=[]",
                                   "eval.latency_repeats=0", f"results_dir={results}"]))
    assert spec.data.num_workers == 2
    execute(spec)
    assert at_evaluation["workers"] == set()
