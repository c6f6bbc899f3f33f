"""Atomic checkpoints: written to a temporary file in the same folder, fsynced, then renamed, so a kill
at any moment leaves either the previous checkpoint or the new one, never a torn file."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from methods.harness.atomic import write_file_atomic

LAST = "last.pt"


def save_atomic(obj: Any, path: Path) -> None:
    write_file_atomic(path, lambda f: torch.save(obj, f))


def load(path: Path, device="cpu") -> dict | None:
    """The checkpoint at ``path``, or None when there is none."""
    if not path.exists():
        return None
    return torch.load(path, map_location=device, weights_only=False)


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of the state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
