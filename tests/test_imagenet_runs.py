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
from tests.conftest import ROOT
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
    assert "decode_seconds" not in record["evals"][0]["timing"]          # pixels: nothing to decode


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

    def stop_at_3(t):
        if t.step == 3:
            t.stop_reason = "asked by a hook"

    _, first = fit(tmp_path / "a", (stop_at_3,))
    assert (first.status, first.steps) == ("partial", 3)
    resumed, second = fit(tmp_path / "a")
    straight, _ = fit(tmp_path / "b")
    assert second.status == "finished" and second.resumes == 1
    for name, p in straight.net.state_dict().items():
        assert torch.equal(p, resumed.net.state_dict()[name]), name
