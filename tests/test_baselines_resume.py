"""Exact resume for the baselines: training interrupted at a checkpoint and resumed ends bitwise equal (CPU)
to an uninterrupted run, because every random draw of their losses comes from ``batch.random``."""
from __future__ import annotations

import pytest
import torch

from bench.config import compose_config
from bench.tasks import prepare
from methods.backbones import build_backbone
from methods.harness.dist import DistEnv
from methods.harness.trainer import Trainer, TrainConfig
from tests.test_resume import _assert_bitwise_equal

CASES = [
    ("flow", ["method.time_dist=logit_normal"]),
    ("diffusion", ["method.prediction=v_prediction"]),
    ("meanflow", []),
    ("meanflow", ["method.omega=1.5"]),
]


def train(method: str, extra: list[str], steps: int, run_dir, seed: int = 3) -> Trainer:
    spec = prepare(compose_config([f"method={method}", "data=ring8", "model.hidden=32", "model.depth=2",
                                   "data.n_train=500", "method.conditional=true", *extra]))
    torch.manual_seed(seed)
    net = spec.method.build(build_backbone(spec.model, spec.method.backbone_io(spec.data.spec)), spec.data.spec)
    cfg = TrainConfig(steps=steps, batch_size=64, lr=3e-3, ema=[0.9], ckpt_every_steps=3, log_every=2,
                      progress=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(spec.method, net, spec.data, cfg, run_dir, seed, DistEnv(), log=lambda _: None)
    trainer.fit()
    return trainer


@pytest.mark.parametrize("method,extra", CASES)
def test_resume_is_bitwise_exact(method, extra, tmp_path):
    whole = train(method, extra, 6, tmp_path / "whole")
    train(method, extra, 3, tmp_path / "split")              # "killed" after the step-3 checkpoint
    resumed = train(method, extra, 6, tmp_path / "split")
    assert resumed.resumes == 1 and resumed.step == 6
    _assert_bitwise_equal(whole.state(), resumed.state())       # weights, EMA and AdamW moments
    moved = train(method, extra, 6, tmp_path / "other_seed", seed=4)
    assert not torch.equal(next(iter(moved.net.state_dict().values())), next(iter(whole.net.state_dict().values())))
