"""Atomic checkpoints: written to a temporary file in the same folder, fsynced, then renamed, so a kill
at any moment leaves either the previous checkpoint or the new one, never a torn file.

``keep_recent`` keeps the last k checkpoints as ``step_<N>.pt`` beside ``last.pt`` (``train.keep_checkpoints``),
for evaluating quality over training (``task=evaluate eval.checkpoints=...``)."""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from methods.harness.atomic import write_file_atomic

LAST = "last.pt"
STEP = re.compile(r"step_(\d+)\.pt")


def save_atomic(obj: Any, path: Path) -> None:
    write_file_atomic(path, lambda f: torch.save(obj, f))


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be read (copied in part, overwritten by something else)."""


def load(path: Path, device="cpu") -> dict | None:
    """The checkpoint at ``path``, or None when there is none; ``CheckpointError`` when it is unreadable."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {first[:120]}); restore it, "
                              f"or move it away to train the run again from the start") from None


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of the state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def step_file(folder: Path, step: int) -> Path:
    return Path(folder) / f"step_{step:08d}.pt"


def kept_steps(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every ``step_<N>.pt`` in ``folder``, oldest first."""
    found = [(int(m[1]), p) for p in Path(folder).glob("step_*.pt") if (m := STEP.fullmatch(p.name))]
    return sorted(found)


def keep_recent(last: Path, step: int, keep: int) -> None:
    """Keep ``last`` (just written at ``step``) as ``step_<N>.pt`` too, and only the ``keep`` newest of those.

    A hard link costs no space or time (``last.pt`` is later replaced by a rename, so the link keeps
    this version); where the file system has none, a copy."""
    if keep <= 0:
        return
    dst = step_file(last.parent, step)
    dst.unlink(missing_ok=True)
    try:
        os.link(last, dst)
    except OSError:
        shutil.copy2(last, dst)
    for _, old in kept_steps(last.parent)[:-keep]:
        old.unlink(missing_ok=True)
