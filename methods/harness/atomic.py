"""Atomic file writes (no torch: the report reads run records through ``bench.record``, which uses this).

The file is written to a temporary name in the same folder, fsynced and renamed over the target, so a
kill at any moment leaves the old file or the complete new one, never a torn file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable


def write_file_atomic(path: Path, write: Callable[[IO], None], mode: str = "wb") -> None:
    """``write(f)`` into a temporary file beside ``path``, fsync, rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
