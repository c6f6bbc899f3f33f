"""A recorded run whose checkpoint is gone is not retrained silently for a new evaluation point, and a
retrain asked for keeps the first training's summary (bench/tasks/train_guard.py)."""
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
