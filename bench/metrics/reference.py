"""Reference features and statistics, computed once and cached.

The cache key hashes the reference's identity (dataset name, the sha256 of the reference samples
themselves or of the reference file, their number, shape and value range: resolution and crop are part
of the samples' shape and content), the extractor's name, its weights hash and the layers. A changed
dataset, split, crop, n or set of weights therefore never reuses stale statistics. Entries live in
``<cache>/reference/<key>.pt`` (see ``MetricOptions.cache_root``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.metrics.registry import Extractor, MetricOptions, Reference

CACHE_VERSION = 1


@dataclass
class RefFeatures:
    layers: dict[str, Tensor]            # empty when only statistics were needed
    labels: Tensor | None
    stats: dict | None                   # {"mu": ndarray, "sigma": ndarray} of "features"
    description: str
    key: str | None
    n: int


def tensor_sha256(*tensors: Tensor | None) -> str:
    h = hashlib.sha256()
    for t in tensors:
        if t is not None:
            t = t.detach().cpu().contiguous()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def data_reference(data, n_ref: int) -> Reference:
    x, y = data.reference(n_ref)
    spec = data.spec
    identity = {"data": spec.name, "split": "reference", "n": len(x), "shape": list(x.shape[1:]),
                "value_range": list(spec.value_range) if spec.value_range else None, "sha256": tensor_sha256(x, y)}
    return Reference(x=x, y=y, description=f"{spec.name} reference set, n={len(x)}", identity=identity)


def statistics(features: Tensor) -> dict:
    """Mean and covariance of ``features`` in float64 (torch-fidelity's ``fid_features_to_statistics``)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.detach().cpu().double())


def batches(x, size: int):
    """Batches of a tensor, or of a uint8 NHWC array (image files) as uint8 NCHW tensors."""
    for i in range(0, len(x), size):
        b = x[i:i + size]
        yield torch.from_numpy(np.ascontiguousarray(b)).permute(0, 3, 1, 2) if isinstance(b, np.ndarray) else b


def cache_key(ext: Extractor, ref: Reference) -> str:
    fields = {"v": CACHE_VERSION, "extractor": ext.name, "weights": ext.weights_hash, "reference": ref.identity}
    if getattr(ext, "quantize", "round") != "round":       # float references quantised another way
        fields["quantize"] = ext.quantize
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def _extract(ext: Extractor, x, size: int) -> dict[str, Tensor]:
    parts: dict[str, list[Tensor]] = {}
    for b in batches(x, size):
        for k, v in ext(b).items():
            parts.setdefault(k, []).append(v.detach().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def _save(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{id(entry)}")
    torch.save(entry, tmp)
    tmp.replace(path)


def reference_features(ext: Extractor, data, n_ref: int, options: MetricOptions,
                       need_features: bool = True) -> RefFeatures:
    """The reference's features (and statistics) in ``ext``, from the cache where possible."""
    maker = getattr(ext, "reference", None)
    ref = (maker(data, n_ref, need_features) if maker else None) or data_reference(data, n_ref)
    if not ext.cache_reference:
        layers = _extract(ext, ref.x, options.feature_batch_size)
        return RefFeatures(layers, ref.y, ref.stats, ref.description, None, len(ref))
    key = cache_key(ext, ref)
    path = options.cache_root() / "reference" / f"{key}.pt"
    if path.exists():
        entry = torch.load(path, weights_only=True)
        stats = {k: v.numpy() for k, v in entry["stats"].items()}
        return RefFeatures(entry["layers"], entry["labels"], stats, ref.description, key, len(ref))
    if not need_features and ref.stats is not None:
        return RefFeatures({}, ref.y, ref.stats, ref.description, key, len(ref))
    if ref.x is None:
        raise ValueError(f"{ref.description}: no samples to compute features from")
    layers = _extract(ext, ref.x, options.feature_batch_size)
    stats = ref.stats if ref.stats is not None else statistics(layers["features"])
    _save(path, {"identity": json.dumps(ref.identity, sort_keys=True), "extractor": ext.name,
                 "weights_hash": ext.weights_hash, "layers": layers, "labels": ref.y,
                 "stats": {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in stats.items()}})
    return RefFeatures(layers, ref.y, stats, ref.description, key, len(ref))


def floor_features(ext: Extractor, data, n: int, options: MetricOptions, draw: int = 0) -> Tensor:
    """Features of independent data sample ``draw`` (the data-versus-data floor; not cached)."""
    x, _ = data.floor(n, draw)
    return _extract(ext, x, options.feature_batch_size)["features"]
