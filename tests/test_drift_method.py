"""Drifting as a method: conditional path (queues, CFG, features), encoder task, resume, NFE rules."""
from __future__ import annotations

import json

import pytest
import torch

from bench.config import ConfigError, compose_config
from bench.tasks import execute, prepare
from methods.backbones import build_backbone
from methods.base import NFEError
from methods.harness.dist import DistEnv
from methods.harness.trainer import Trainer

SMALL = ["method.classes_per_step=3", "method.gen_per_class=4", "method.pos_per_class=4", "method.unc_per_class=2",
         "method.class_queue=8", "method.global_queue=16", "train.batch_size=16", "train.progress=false",
         "eval.num_samples=20", "eval.batch_size=20", "eval.latency_repeats=0"]


def _spec(tmp_path, *overrides):
    return prepare(compose_config([f"results_dir={tmp_path}", *overrides]))


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny pre-trained digits encoder (6 MAE steps, 2 of them with the classification fine-tune)."""
    d = tmp_path_factory.mktemp("enc")
    spec = _spec(d, "task=pretrain_encoder", "data=digits", "encoder.train.steps=6", "encoder.cls_ft_steps=2",
                 "encoder.cls_warmup=1", "encoder.train.batch_size=16", "encoder.train.progress=false",
                 "encoder.eval_samples=32", "encoder.train.warmup_steps=0")
    out = execute(spec)
    assert out == d / "encoders" / "digits_tiny-digits-s0.pt"
    return d


def test_pretrain_writes_encoder_with_hash_and_provenance(encoder_dir):
    side = json.loads((encoder_dir / "encoders" / "digits_tiny-digits-s0.json").read_text())
    assert len(side["sha256"]) == 64 and side["train"]["steps"] == 6 and side["weights"] == "ema_0.995"
    assert side["eval"]["recon_masked"] > 0
    rows = [json.loads(r) for r in (encoder_dir / "runs" / "pretrain-digits_tiny-digits-s0" / "train_log.jsonl")
            .read_text().splitlines()]
    assert rows[-1]["lambda_cls"] > 0 and "recon" in rows[-1]


def test_conditional_feature_drifting_trains_and_samples_with_guidance(encoder_dir):
    spec = _spec(encoder_dir, "method=drifting", "data=digits", "train.steps=3", "train.log_every=1", *SMALL)
    assert spec.method.conditional and spec.config["method"]["encoder_sha256"] == json.loads(
        (encoder_dir / "encoders" / "digits_tiny-digits-s0.json").read_text())["sha256"]
    rec = json.loads(execute(spec).read_text())
    assert [e["guidance"] for e in rec["evals"]] == [1.0, 1.5, 2.0]
    assert all(e["nfe_measured"] == 1 for e in rec["evals"])
    row = json.loads((encoder_dir / "runs" / "drifting-digits-mlp-s0" / "train_log.jsonl").read_text().splitlines()[-1])
    for key in ("scale", "scale/global", "drift_sq/0.02", "drift_sq/0.2", "attract_sq/0.05", "repel_sq/0.05",
                "alpha_mean"):
        assert key in row and row[key] == row[key], key
    samples = {g: torch.from_numpy(__import__("numpy").load(encoder_dir / "runs" / "drifting-digits-mlp-s0" /
                                                          f"samples_ema_0.99_nfe1_g{g:g}.npy")) for g in (1.0, 2.0)}
    assert not torch.allclose(samples[1.0], samples[2.0])          # alpha is a real input


def test_missing_or_wrong_encoder_fails_in_one_line(tmp_path, encoder_dir):
    with pytest.raises(ConfigError) as e:
        _spec(tmp_path, "method=drifting", "data=digits", *SMALL)
    msg = str(e.value)
    assert "\n" not in msg and "not found" in msg and "python -m bench.run task=pretrain_encoder data=digits" in msg
    path = encoder_dir / "encoders" / "digits_tiny-digits-s0.pt"
    with pytest.raises(ConfigError, match="SHA-256"):
        _spec(tmp_path, "method=drifting", "data=digits", f"method.encoder_path={path}",
              "method.encoder_sha256=" + "0" * 64, *SMALL)


def _train(spec, run_dir, steps):
    torch.manual_seed(0)
    net = spec.method.build(build_backbone(spec.model, spec.method.backbone_io(spec.data.spec)), spec.data.spec)
    spec.train.steps = steps
    run_dir.mkdir(parents=True, exist_ok=True)
    tr = Trainer(spec.method, net, spec.data, spec.train, run_dir, 0, DistEnv(), log=lambda s: None)
    tr.fit()
    return tr


def test_resume_is_exact_with_queues(tmp_path):
    """Raw-output conditional drifting (no encoder): 6 steps straight = 3 steps, a new process-like
    restart from the checkpoint, 3 more; weights, AdamW state and queues all equal."""
    over = ["method=drifting", "data=digits", "method.encoder_path=null", "train.ckpt_every_steps=1", *SMALL]
    a = _train(_spec(tmp_path, *over), tmp_path / "a", 6)
    _train(_spec(tmp_path, *over), tmp_path / "b", 3)
    b = _train(_spec(tmp_path, *over), tmp_path / "b", 6)
    assert b.resumes == 1
    for (k, pa), pb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(pa, pb), k
    qa, qb = a.method.state_dict()["queues"], b.method.state_dict()["queues"]
    for part in ("classes", "unconditional"):
        for k in ("buf", "ptr", "count"):
            assert torch.equal(qa[part][k], qb[part][k])


def test_nfe_and_guidance_rules(tmp_path, encoder_dir):
    cond = _spec(encoder_dir, "method=drifting", "data=digits", *SMALL).method
    cond.check_nfe(1, 1.0)
    cond.check_nfe(1, 3.5)
    with pytest.raises(NFEError, match="alpha"):
        cond.check_nfe(1, 0.5)
    with pytest.raises(NFEError, match="one network evaluation"):
        cond.check_nfe(2, 1.0)
    toy = _spec(tmp_path).method
    with pytest.raises(NFEError, match="no guidance"):
        toy.check_nfe(1, 1.5)
    with pytest.raises(ConfigError, match="guidance"):
        _spec(tmp_path, "eval.guidance=[2.0]")


def test_toy_production_loss_runs_and_logs(tmp_path):
    spec = _spec(tmp_path, "method.loss=production", "train.steps=3", "train.log_every=1", "train.batch_size=64",
                 "train.progress=false", "eval.num_samples=50", "eval.batch_size=50", "eval.latency_repeats=0")
    execute(spec)
    row = json.loads((tmp_path / "runs" / "drifting-ring8-mlp-s0" / "train_log.jsonl").read_text().splitlines()[-1])
    assert {"scale", "drift_sq/0.02", "attract_sq/0.2", "repel_sq/0.05"} <= set(row)


@pytest.mark.parametrize("bad,msg", [
    (["method.loss=l3"], "method.loss"),
    (["method.repulsion=0.5"], "loss=production"),
    (["method.loss=production", "method.attraction=0", "method.repulsion=0"], "both be 0"),
    (["method=drifting", "data=digits", "method.encoder_path=null", "method.raw_loss=false"], "encoder"),
    (["method=drifting", "data=digits", "method.encoder_path=null", "method.classes_per_step=100"], "classes_per_step"),
    (["method=drifting", "data=digits", "method.encoder_path=null", "method.alpha_min=0.5"], "alpha_min"),
    (["task=pretrain_encoder", "data=ring8"], "image data"),
    (["task=nope"], "unknown task .nope.; choose one of: train, pretrain_encoder"),
])
def test_bad_configs_fail_in_one_line(tmp_path, bad, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        _spec(tmp_path, *bad)
    assert "\n" not in str(e.value)


def test_dit_generator_gets_style_tokens_and_alpha(tmp_path, encoder_dir):
    """With the paper's generator (model=dit_digits) the style indices are fed automatically."""
    spec = _spec(encoder_dir, "method=drifting", "data=digits", "model=dit_digits", "train.steps=2", "tag=dit",
                 "eval.guidance=[1.0,3.0]", *SMALL)
    assert spec.method.backbone_io(spec.data.spec).cond == ("y", "alpha", "style")
    rec = json.loads(execute(spec).read_text())
    assert [e["nfe_measured"] for e in rec["evals"]] == [1, 1]
    assert spec.method.cond_step.style_shape == (32, 64)
    no_style = _spec(encoder_dir, "method=drifting", "data=digits", "model=dit_digits", "method.style=false", *SMALL)
    assert no_style.method.backbone_io(no_style.data.spec).cond == ("y", "alpha")
