"""Quality during training (bench/train_quality.py): rows every train.eval_every images, collapse
warnings, no effect on training, exact rows across a crash and resume, and the run record's summary."""
from __future__ import annotations

import json
import re

import pytest
import torch

from bench.config import compose_config
from bench.tasks import execute, prepare
from bench.train_quality import QualityWatch, covered_by_perfect_sampler
from methods.backbones import build_backbone
from methods.harness.dist import DistEnv
from methods.harness.trainer import Trainer

SMALL = ["train.steps=40", "train.batch_size=128", "train.log_every=10", "train.progress=false",
         "train.eval_every=1280", "train.eval_samples=300", "eval.num_samples=300", "eval.batch_size=300",
         "eval.latency_repeats=0"]


def _spec(tmp_path, *over):
    return prepare(compose_config([f"results_dir={tmp_path}", *SMALL, *over]))


def _rows(run_dir):
    return [json.loads(r) for r in (run_dir / "eval_log.jsonl").read_text().splitlines()]


class Crash(RuntimeError):
    pass


def _fit(spec, run_dir, *extra_hooks):
    torch.manual_seed(0)
    net = spec.method.build(build_backbone(spec.model, spec.method.backbone_io(spec.data.spec)), spec.data.spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    watch = QualityWatch.of(spec, run_dir)
    trainer = Trainer(spec.method, net, spec.data, spec.train, run_dir, 0, DistEnv(), log=lambda s: None,
                      hooks=(watch, *extra_hooks))
    trainer.fit()
    return trainer, watch


def test_rows_every_eval_every_images_and_the_record(tmp_path):
    spec = _spec(tmp_path)
    assert spec.train.eval_every == 1280
    record = json.loads(execute(spec).read_text())
    rows = _rows(tmp_path / "runs" / spec.run_id)
    assert [r["step"] for r in rows] == [10, 20, 30, 40] and [r["images"] for r in rows] == [1280, 2560, 3840, 5120]
    for r in rows:
        assert {"modes", "hq_frac", "energy", "collapse", "seconds"} <= set(r) and r["n_samples"] == 300
        assert r["weights"] == "ema_0.99" and r["nfe"] == 1
    tq = record["train_quality"]
    assert tq["points"] == 4 and tq["metrics"] == ["modes", "hq_frac", "energy"] and tq["every_images"] == 1280
    assert tq["collapse_warnings"] == [r["collapse"] for r in rows if r["collapse"]]


def test_a_collapsed_generator_is_warned_about(tmp_path, capsys):
    """Collapsed onto one ring8 mode and barely trained: 1 of 8 modes, below half of the 8 a perfect
    sampler of 300 covers; printed during training and kept in the record."""
    spec = _spec(tmp_path, "method.collapse_to=[1.0,0.0]", "method.collapse_steps=60", "train.lr=1e-7",
                 "train.ema=[0.5]", "eval.weights=[ema_0.5]")
    record = json.loads(execute(spec).read_text())
    warnings = record["train_quality"]["collapse_warnings"]
    assert len(warnings) == 4 and re.search("modes [01] of 8", warnings[-1])
    assert "step 40 (5,120 images)" in warnings[-1]
    assert warnings[-1] in capsys.readouterr().out
    assert covered_by_perfect_sampler(8, 300) == pytest.approx(8.0, abs=1e-12)
    assert covered_by_perfect_sampler(1000, 500) == pytest.approx(393.7, abs=0.1)


def test_the_watch_does_not_change_training_and_resumes_its_rows_exactly(tmp_path):
    spec = _spec(tmp_path, "train.ckpt_every_steps=20")
    straight, watch = _fit(spec, tmp_path / "straight")

    off = _spec(tmp_path, "train.eval_every=0")
    assert QualityWatch.of(off, tmp_path) is None
    torch.manual_seed(0)
    net = off.method.build(build_backbone(off.model, off.method.backbone_io(off.data.spec)), off.data.spec)
    (tmp_path / "plain").mkdir()
    plain = Trainer(off.method, net, off.data, off.train, tmp_path / "plain", 0, DistEnv(), log=lambda s: None)
    plain.fit()
    for (k, a), b in zip(straight.net.state_dict().items(), plain.net.state_dict().values()):
        assert torch.equal(a, b), k

    def crash_at_35(trainer):
        if trainer.step == 35:
            raise Crash()

    with pytest.raises(Crash):               # rows 10, 20, 30 written; the checkpoint is at step 20
        _fit(_spec(tmp_path, "train.ckpt_every_steps=20"), tmp_path / "crashed", crash_at_35)
    assert [r["step"] for r in _rows(tmp_path / "crashed")] == [10, 20, 30]
    _fit(_spec(tmp_path, "train.ckpt_every_steps=20"), tmp_path / "crashed")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(_rows(tmp_path / "crashed")) == drop(_rows(tmp_path / "straight"))
    assert watch.summary()["points"] == 4


def test_bad_settings_fail_in_one_line(tmp_path):
    from bench.errors import ConfigError
    for bad in ("train.eval_every=-1", "train.eval_samples=0", "train.collapse_below=2"):
        with pytest.raises(ConfigError, match="eval_every") as e:
            _spec(tmp_path, bad)
        assert "\n" not in str(e.value)
