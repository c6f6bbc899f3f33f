"""Per-process method state in checkpoints (drifting's queues with ``method.queue_fill=local``).

When the processes of a run hold different method state, each rank writes its own file
``checkpoints/rank<r>-step<s>.pt`` (atomically) before rank 0 writes ``last.pt``, which names the step
and the number of ranks: ``last.pt`` is the commit point. A kill at any moment leaves a ``last.pt``
whose rank files all exist (older rank files are removed only after the newer ``last.pt`` is in place),
so every rank resumes with its own state of the same step.
"""
from __future__ import annotations

from pathlib import Path

from methods.harness.checkpoint import load, save_atomic


def rank_path(folder: Path, rank: int, step: int) -> Path:
    return Path(folder) / f"rank{rank}-step{step}.pt"


def save(folder: Path, rank: int, step: int, state: dict) -> None:
    save_atomic({"rank": rank, "step": step, "method": state}, rank_path(folder, rank, step))


def restore(folder: Path, rank: int, step: int, device="cpu") -> dict:
    """This rank's method state of ``step``; a one-line error when the file is missing."""
    state = load(rank_path(folder, rank, step), device)
    if state is None:
        raise FileNotFoundError(f"checkpoint of step {step} has no state file for rank {rank} "
                                f"({rank_path(folder, rank, step)}); resume with the run's process count")
    return state["method"]


def prune(folder: Path, rank: int, keep_step: int) -> None:
    """Remove this rank's state files of steps other than ``keep_step``."""
    for p in Path(folder).glob(f"rank{rank}-step*.pt"):
        if p != rank_path(folder, rank, keep_step):
            p.unlink(missing_ok=True)
