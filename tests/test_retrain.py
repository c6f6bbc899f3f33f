"""A recorded run whose checkpoint is gone is not retrained silently for a new evaluation point, a retrain
asked for keeps the first training's summary (bench/tasks/train_guard.py), and an unreadable checkpoint
is one line (methods/harness/checkpoint.py)."""
import json

from tests.conftest import FAST, run_bench

RUN_ID = "drifting-ring8-mlp-s0"


def test_lost_checkpoint_refuses_a_new_point_and_retrain_keeps_the_first_history(finished_run):
    results = finished_run
    record = results / "records" / f"{RUN_ID}.json"
    before = record.read_bytes()
    first = json.loads(before)
    (results / "runs" / RUN_ID / "checkpoints" / "last.pt").unlink()

    refused = run_bench(*FAST, "eval.weights=[raw]", results=results, check=False)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert "checkpoint" in lines[0] and "is gone" in lines[0] and "train.retrain=true" in lines[0]
    assert record.read_bytes() == before
    assert not (results / "runs" / RUN_ID / "checkpoints" / "last.pt").exists()

    assert "already complete" in run_bench(*FAST, results=results).stdout   # nothing new asked: no refusal

    run_bench(*FAST, "eval.weights=[raw]", "train.retrain=true", results=results)
    after = json.loads(record.read_text())
    (old,) = after["train_history"]
    assert {k: old[k] for k in first["train"]} == first["train"] and old["evals_before"] == 1
    assert after["train"]["status"] == "finished" and after["train"]["resumes"] == 0
    assert after["train"]["wall_seconds"] != first["train"]["wall_seconds"]
    assert [ev["weights"] for ev in after["evals"]] == ["ema_0.99", "raw"]
    assert after["evals"][0] == first["evals"][0]


def test_an_unreadable_checkpoint_is_one_line_and_keeps_the_record(finished_run):
    results = finished_run
    record = results / "records" / f"{RUN_ID}.json"
    before = record.read_bytes()
    ckpt = results / "runs" / RUN_ID / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])             # a checkpoint copied in part
    proc = run_bench(*FAST, "eval.weights=[raw]", results=results, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert f"checkpoint {ckpt} cannot be read" in lines[0] and "move it away" in lines[0]
    assert record.read_bytes() == before
