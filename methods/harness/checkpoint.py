"""Atomic checkpoints: written to a temporary file in the same folder, fsynced, then renamed, so a kill
at any moment leaves either the previous checkpoint or the new one, never a torn file."""
from __future__ import annotations

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
