"""What the train task keeps or refuses around training, so that no run's history is lost silently.

- ``refuse_lost_checkpoint``: a record whose checkpoint is gone cannot be evaluated at new points without
  training the model again from scratch; that is refused unless ``train.retrain=true``.
- ``start_retrain``: a retrain moves the first training's summary to ``train_history`` (never overwritten),
  with ``evals_before``: how many of the record's evaluations were made with that training's weights.
- ``diverged_summary``: the ``train`` entry of a run stopped by the NaN guard (status ``diverged``, the
  step, what was non-finite, the last good checkpoint and the message).
"""
from __future__ import annotations

from pathlib import Path

from bench import record as rec
from bench.errors import ConfigError


def refuse_lost_checkpoint(run_id: str, stored: dict | None, ckpt: Path, retrain: bool, rec_path: Path) -> None:
    if stored is None or ckpt.exists() or retrain or stored["train"].get("status") not in ("finished", "partial"):
        return
    raise ConfigError(f"run '{run_id}' has a record ({rec_path}) but its checkpoint {ckpt} is gone, so new "
                      f"evaluation points would train the model again from scratch; restore the checkpoint, or add "
                      f"train.retrain=true to retrain (the record keeps the first training's summary)")


def start_retrain(record: dict, ckpt: Path) -> bool:
    """Before training a recorded run whose checkpoint is gone: move its summary to ``train_history``."""
    if ckpt.exists() or not record.get("train"):
        return False
    record.setdefault("train_history", []).append(
        {**record["train"], "replaced": rec.now(), "evals_before": len(record["evals"])})
    record["train"] = {}
    return True


def diverged_summary(summary: dict, e) -> dict:
    """``e``: the harness's ``TrainingDiverged`` (what, step, checkpoint_step, checkpoint_path)."""
    kept = e.checkpoint_step is not None
    return {**summary, "status": "diverged", "error": str(e),
            "diverged": {"what": e.what, "step": e.step, "checkpoint_step": e.checkpoint_step,
                         "checkpoint": str(e.checkpoint_path) if kept else None}}


def waits_for_lock(results_dir: str, run_id: str) -> bool:
    """A finished run only evaluates: a second command on it waits for the lock instead of refusing."""
    try:
        return rec.read(Path(results_dir) / "records" / f"{run_id}.json")["train"].get("status") == "finished"
    except (OSError, rec.RecordError):
        return False
