"""The checkpoints ``task=evaluate`` evaluates (``eval.checkpoints``) and loading their weights.

A run keeps ``checkpoints/last.pt`` and, with ``train.keep_checkpoints=K``, its K newest checkpoints as
``step_<N>.pt`` (``methods/harness/checkpoint.py``). ``last`` evaluates ``last.pt``; ``all`` every kept
``step_<N>.pt``; a number K the K newest of those (a quality-over-training curve). A checkpoint at the
run's full ``train.steps`` is the run's final weights: its points carry ``checkpoint_step`` null, like the
points ``task=train`` records after training, so they are the same points (and skipped when present).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from methods.harness import checkpoint
from methods.harness.ema import EMASet


def select(folder: Path, choice: str | int) -> list[Path]:
    """The checkpoint files ``choice`` names, oldest first (``last.pt`` where no step files were kept)."""
    last = Path(folder) / checkpoint.LAST
    kept = [p for _, p in checkpoint.kept_steps(folder)]
    if choice == "last" or not kept:
        return [last] if last.exists() else []
    return kept if choice == "all" else kept[-int(choice):]


def load_weights(path: Path, net: nn.Module, ema: EMASet, method, device) -> int:
    """Load a checkpoint's network, EMAs and method state into ``net``/``ema``/``method``; its step."""
    state = checkpoint.load(path, device)
    net.load_state_dict(state["net"])
    ema.load_state_dict(state["ema"])
    method.load_state_dict(state["method"])
    return int(state["step"])
