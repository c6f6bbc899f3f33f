"""Atomic checkpoints: written to a temporary file in the same folder, fsynced, then renamed, so a kill
at any moment leaves either the previous checkpoint or the new one, never a torn file."""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from methods.harness.atomic import write_file_atomic

LAST = "last.pt"


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
