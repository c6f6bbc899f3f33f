"""Refuse a folder the run cannot write in, before anything runs: a path that is (or goes through) a
file, or a folder where writing fails. Writability is tested by writing, not by permission bits (root
ignores them; read-only mounts and quotas do not show in them); the probe is an anonymous temporary
file, so nothing is left behind."""
from __future__ import annotations

import tempfile
from pathlib import Path

from bench.errors import ConfigError


def check_folder(key: str, path: str | Path, subfolders: tuple[str, ...] = ("records", "runs")) -> None:
    """``key=path`` must be a folder that exists and is writable, or one that can be made: its nearest
    existing ancestor is a writable folder. Existing ``subfolders`` must be writable folders too."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        where = "is a file" if existing == path else f"goes through the file {existing}"
        raise ConfigError(f"{key}={path} {where}, not a folder; point {key} at a folder")
    probes = [existing] + [path / s for s in subfolders if (path / s).exists()]
    for folder in probes:
        if not folder.is_dir():
            raise ConfigError(f"{key}={path}: {folder} is a file, not a folder; move it away or choose another {key}")
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise ConfigError(f"{key}={path}: cannot write in {folder} ({e.strerror}); choose a writable {key}") from None
