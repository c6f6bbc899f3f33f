"""Dataset registry: ``data.name`` -> (config dataclass, builder returning a data source).

A data source serves training batches (``batch(step, seed, rank, world, local_batch, device)``), a held-out
``reference(n)`` for metrics, an independent ``floor(n)`` sample where it has one, for toys the known
``modes`` and for labelled images the domain classifier's data (``classifier``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from bench.data.digits import DigitsConfig, build_digits
from bench.data.imagenet_latent import ImageNetLatentConfig, build_imagenet_latent
from bench.data.imagenet_pixel import ImageNetPixelConfig, build_imagenet_pixel
from bench.data.toy import TOYS, ToyConfig, build_toy
from bench.data.vision import READERS, VisionConfig, build_vision


@dataclass(frozen=True)
class DatasetEntry:
    config: type
    build: Callable[[Any], Any]


DATASETS: dict[str, DatasetEntry] = {
    **{name: DatasetEntry(ToyConfig, build_toy) for name in TOYS},
    "digits": DatasetEntry(DigitsConfig, build_digits),
    "stacked_digits": DatasetEntry(DigitsConfig, build_digits),
    **{name: DatasetEntry(VisionConfig, build_vision) for name in READERS},
    "imagenet_pixel": DatasetEntry(ImageNetPixelConfig, build_imagenet_pixel),
    "imagenet_latent": DatasetEntry(ImageNetLatentConfig, build_imagenet_latent),
}


def dataset_entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset '{name}'; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def build_data(cfg: dict[str, Any]):
    entry = dataset_entry(cfg["name"])
    return entry.build(entry.config(**cfg))
