"""Exact resume: a run killed with SIGKILL and re-run ends bitwise equal to an uninterrupted run (CPU)."""
import json
import signal
import subprocess
import sys
import time

import torch

from tests.conftest import FAST, ROOT, bench_env, run_bench

RUN_ID = "drifting-ring8-mlp-s0"


def _state(results):
    return torch.load(results / "runs" / RUN_ID / "checkpoints" / "last.pt", weights_only=False)


def _assert_bitwise_equal(a: dict, b: dict):
    for key in ("net", "ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    for sa, sb in zip(a["opt"]["state"].values(), b["opt"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sigkill_and_rerun_matches_uninterrupted_run(tmp_path):
    args = [*FAST, "train.steps=60"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_bench(*args, results=straight)

    ckpt = killed / "runs" / RUN_ID / "checkpoints" / "last.pt"
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", f"results_dir={killed}", *args], cwd=ROOT,
                            env=bench_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=False)["step"] >= 20:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=False)["step"]
    assert 20 <= killed_at < 60

    out = run_bench(*args, results=killed)
    assert f"resuming from step {killed_at}" in out.stdout
    a, b = _state(straight), _state(killed)
    assert a["step"] == b["step"] == 60
    _assert_bitwise_equal(a, b)
    rec_a = json.loads((straight / "records" / f"{RUN_ID}.json").read_text())
    rec_b = json.loads((killed / "records" / f"{RUN_ID}.json").read_text())
    assert rec_b["train"]["resumes"] == 1 and rec_a["train"]["resumes"] == 0
    assert rec_a["evals"][0]["metrics"] == rec_b["evals"][0]["metrics"]
    # The log holds each logged step exactly once, also across the kill.
    steps = [json.loads(r)["step"] for r in (killed / "runs" / RUN_ID / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(5, 61, 5))


def test_rerunning_a_finished_run_does_nothing(results):
    run_bench(*FAST, results=results)
    record = results / "records" / f"{RUN_ID}.json"
    before = record.read_bytes()
    t = time.time()
    out = run_bench(*FAST, results=results)
    assert "already complete, nothing to do" in out.stdout
    assert time.time() - t < 30
    assert record.read_bytes() == before


def test_new_eval_points_are_added_without_retraining(results):
    run_bench(*FAST, results=results)
    out = run_bench(*FAST, "eval.weights=[ema_0.99,raw]", results=results)
    assert "resuming" not in out.stdout and "sampling 300 with raw" in out.stdout
    assert "with ema_0.99" not in out.stdout
    rec = json.loads((results / "records" / f"{RUN_ID}.json").read_text())
    assert sorted(ev["weights"] for ev in rec["evals"]) == ["ema_0.99", "raw"]
