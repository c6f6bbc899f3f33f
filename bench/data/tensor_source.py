"""Data sources: ``Source`` (reference and floor sets) and ``TensorSource``, a dataset held in memory as
tensors, served as per-rank shards of seeded global batches (on-disk data: ``bench/data/loader.py``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from bench.data.sampler import EpochSampler
from methods.base import Batch, DataSpec, StepRandom


@dataclass(frozen=True)
class Modes:
    """Known mixture components (2-D toys): means ``[K, D]``, common std, weights ``[K]``."""

    means: Tensor
    std: float
    weights: Tensor


@dataclass(frozen=True)
class ClassifierData:
    """Labelled images the domain classifier (``bench.metrics.domain``) learns and is tested on.

    ``split() -> (x_train, y_train, x_test, y_test)`` in the data's value range; ``mode`` says how the
    classifier reads a sample: "grey" (one channel), "rgb", or "stacked" (each channel is one grey image
    of the split, VEEGAN's Stacked-MNIST protocol). Training runs ``epochs``, or more where that is under
    ``min_steps`` updates (small subsets)."""

    key: str                              # names the cached classifier file
    split: Callable[[], tuple[Tensor, Tensor, Tensor, Tensor]]
    num_classes: int
    description: str
    mode: str = "grey"
    epochs: int = 8
    min_steps: int = 0


class Source:
    """What every data source offers besides training batches: two functions ``n -> (x, y)``, the
    metrics' reference set and, where the data can supply one, an independent second sample for
    data-versus-data floors."""

    def __init__(self, spec: DataSpec, reference_fn, floor_fn=None, modes: Modes | None = None,
                 classifier: ClassifierData | None = None):
        self.spec, self.modes, self.classifier = spec, modes, classifier
        self._reference_fn, self._floor_fn = reference_fn, floor_fn

    def reference(self, n: int) -> tuple[Tensor, Tensor]:
        """The samples metrics compare against (toys: ``n`` fresh held-out draws)."""
        return self._reference_fn(n)

    def floor(self, n: int) -> tuple[Tensor, Tensor]:
        """A second, independent sample: the data-versus-data floor of a distance (PROTOCOLS.md)."""
        if self._floor_fn is None:
            raise ValueError(f"data '{self.spec.name}' has no independent second sample for a floor")
        return self._floor_fn(n)


class TensorSource(Source):
    """Training tensors held in memory, served as per-rank shards of seeded global batches."""

    def __init__(self, spec: DataSpec, train: tuple[Tensor, Tensor], reference_fn, floor_fn=None,
                 modes: Modes | None = None, classifier: ClassifierData | None = None):
        super().__init__(spec, reference_fn, floor_fn, modes, classifier)
        self.x, self.y = train
        self._samplers: dict[int, EpochSampler] = {}

    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch:
        sampler = self._samplers.setdefault(seed, EpochSampler(len(self.x), seed))
        idx = sampler.indices(step * local_batch * world + rank * local_batch, local_batch)
        return Batch(x=self.x[idx].to(device), y=self.y[idx].to(device), step=step,
                     random=StepRandom(seed, step, rank, world, local_batch, device))


def as_float(x) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float32)
