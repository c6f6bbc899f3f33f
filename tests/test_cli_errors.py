"""Bad input fails fast in one line naming the valid choices, and writes nothing."""
import sys

import pytest

from bench.run import main
from tests.conftest import FAST, run_bench

CASES = [
    (["method=nope"], "unknown method 'nope'; choose one of: diffusion, drifting, edm, flow, meanflow"),
    (["train.lr=abc"], "train.lr: Value 'abc'"),
    (["train.foo=1"], "unknown config key 'train.foo'; valid keys of train: steps, batch_size, lr"),
    (["+train.foo=1"], "unknown config key 'train.foo'"),
    (["+method.bogus=2"], "unknown config key 'method.bogus'"),
    (["nope=1"], "unknown config key 'nope'"),
    (["data=nowhere"], "unknown data 'nowhere'; choose one of:"),
    (["eval.nfe=[1,4]"], "drifting generates in one network evaluation: eval.nfe must be [1], got 4"),
    (["eval.nfe=[x]"], "eval.nfe[0]: Value 'x'"),
    (["eval.weights=[ema_0.5]"], "choose from: raw, ema_0.99, ema_0.999"),
    (["eval.metrics=[nope]"], "eval.metrics: unknown ['nope']"),
    (["data=moons", "eval.metrics=[modes]"], "metric modes cannot run on data 'moons'"),
    (["data=digits"], "not found; make it with: python -m bench.run task=pretrain_encoder data=digits results_dir="),
    (["method=flow", "data=mnist", "data.root=/nowhere"], "data.root=/nowhere: no MNIST files (expected /nowhere/"
                                                          "MNIST/raw/train-images-idx3-ubyte); set data.root=PATH"),
    (["seed=one"], "seed: Value 'one'"),
    (["device=tpu"], "device must be auto, cpu, cuda or cuda:N"),
    (["train.schedule=linear"], "train.schedule must be one of ['constant', 'cosine']"),
    (["method.group_size=7"], "must be >= 2 and divide the per-process batch"),
    (["tag=a/b"], "tag='a/b' may only hold"),
    (["-m", "seed=0,1", "method=drifting,nope"], "unknown method 'nope'"),
]


def _existing(results):
    keep = results / "records" / "existing.json"
    keep.parent.mkdir(parents=True)
    keep.write_text("{}")
    return keep


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_fails_in_one_line_without_writing(results, args, message, monkeypatch, capsys):
    keep = _existing(results)
    monkeypatch.setattr(sys, "argv", ["bench.run", f"results_dir={results}", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("bench.run: error: ") and message in lines[0], lines[0]
    assert sorted(p.name for p in results.rglob("*")) == ["existing.json", "records"]
    assert keep.read_text() == "{}"


@pytest.mark.parametrize("args", [["method=nope"], ["train.lr=abc"]])
def test_command_line_exits_nonzero_with_one_line(results, args):
    keep = _existing(results)
    proc = run_bench(*args, results=results, check=False, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("bench.run: error: ")
    assert keep.read_text() == "{}" and len(list(results.rglob("*"))) == 2


def test_changed_training_config_is_refused_with_a_diff_and_tag_makes_a_new_run(results):
    run_bench(*FAST, results=results)
    record = results / "records" / "drifting-ring8-mlp-s0.json"
    before = record.read_bytes()
    proc = run_bench(*FAST, "train.lr=0.002", results=results, check=False)
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert "exists with another training config (train.lr: 0.003 -> 0.002)" in line and "tag=NAME" in line
    assert record.read_bytes() == before
    run_bench(*FAST, "train.lr=0.002", "tag=lr2", results=results)
    assert (results / "records" / "drifting-ring8-mlp-s0-lr2.json").exists()


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(results):
    proc = run_bench(*FAST, "train.lr=1e30", "train.ckpt_every_steps=1", results=results, check=False)
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert "training diverged: non-finite" in line and "lower train.lr" in line
    import json

    import torch
    rec = json.loads((results / "records" / "drifting-ring8-mlp-s0.json").read_text())
    assert rec["train"]["status"] == "diverged" and rec["evals"] == []
    ck = torch.load(results / "runs" / "drifting-ring8-mlp-s0" / "checkpoints" / "last.pt", weights_only=False)
    assert all(torch.isfinite(p).all() for p in ck["net"].values())
    assert f"last good checkpoint (step {ck['step']})" in line
