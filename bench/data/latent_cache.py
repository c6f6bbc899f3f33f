"""The on-disk latent cache of ``data=imagenet_latent`` (built by ``task=cache_latents``).

One folder holds:
- ``manifest.json``: the build's identity (VAE id and weights hash, resolution, crop, posterior, scale,
  noise seed, source root and split, the SHA-256 of the file list, count, chunk size, shape); written once,
  atomically, by whichever process creates the cache;
- ``latents.npy``: ONE fp16 array ``[N, 2, 4, R/8, R/8]`` (the centre crop and its mirror), written in
  place through ``np.lib.format.open_memmap`` and read the same way, never loaded whole;
- ``labels.npy``: int64 ``[N]``;
- ``done-<shard>-of-<shards>.json``: the chunks each writer has finished, written atomically after the
  chunk's rows are flushed to disk. Each writer owns its file, so processes and array jobs writing
  disjoint chunks of the same array never race; the chunks done are the union of these files.

A killed writer loses at most the chunk it was writing; a rerun skips what is done.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from methods.harness.atomic import write_file_atomic

FORMAT = 1
MANIFEST, LATENTS, LABELS = "manifest.json", "latents.npy", "labels.npy"
# What makes two builds the same: any difference refuses to mix their chunks (source_root may move).
IDENTITY = ("format", "vae_sha256", "resolution", "crop", "posterior", "scale", "noise_seed", "split",
            "count", "files_sha256", "num_classes", "chunk", "shape")


def chunk_range(chunk: int, size: int, count: int) -> range:
    return range(chunk * size, min((chunk + 1) * size, count))


def num_chunks(manifest: dict) -> int:
    return -(-manifest["count"] // manifest["chunk"])


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')}")
        return manifest
    except (ValueError, json.JSONDecodeError) as e:
        raise ValueError(f"data.cache={folder}: {MANIFEST} is not a driftbench latent cache manifest ({e}); "
                         f"point data.cache at another folder or remove this one") from None


def identity_diff(old: dict, new: dict) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in IDENTITY if old.get(k) != new.get(k)]


def done_chunks(folder: Path) -> set[int]:
    done: set[int] = set()
    for f in sorted(Path(folder).glob("done-*.json")):
        done.update(json.loads(f.read_text())["done"])
    return done


def mark_done(folder: Path, shard: int, shards: int, done: set[int]) -> None:
    """This writer's finished chunks (all of them, its own file), replaced atomically."""
    path = Path(folder) / f"done-{shard}-of-{shards}.json"
    write_file_atomic(path, lambda f: f.write(json.dumps({"done": sorted(done)})), mode="w")


def _link_new(folder: Path, name: str, write) -> None:
    """Create ``folder/name`` only if it is absent, from a complete temporary file: ``os.link`` fails when
    another process got there first, and then its file (complete, by the same rule) is kept."""
    final = folder / name
    if final.exists():
        return
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    try:
        write(tmp)
        os.link(tmp, final)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def create(folder: Path, manifest: dict, labels: np.ndarray) -> None:
    """Make the cache's files where they are missing (safe when several writers start at once)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _link_new(folder, MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=1)))
    stored = read_manifest(folder)
    diff = identity_diff(stored, manifest)
    if diff:
        raise ValueError(f"data.cache={folder} holds another build ({'; '.join(diff)}); point data.cache at a new "
                         f"folder or remove this one")
    _link_new(folder, LABELS, lambda p: _save_npy(p, labels.astype(np.int64)))
    _link_new(folder, LATENTS, lambda p: np.lib.format.open_memmap(p, mode="w+", dtype=np.float16,
                                                                   shape=tuple(manifest["shape"])).flush())


def open_latents(folder: Path, writable: bool = False) -> np.memmap:
    return np.lib.format.open_memmap(Path(folder) / LATENTS, mode="r+" if writable else "r")
