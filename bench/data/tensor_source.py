"""A dataset held in memory as tensors, served as per-rank shards of seeded global batches."""
from __future__ import annotations

from dataclasses import dataclass

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


class TensorSource:
    """Training tensors plus two functions ``n -> (x, y)``: the metrics' reference set and, where the
    data can supply one, an independent second sample for data-versus-data floors."""

    def __init__(self, spec: DataSpec, train: tuple[Tensor, Tensor], reference_fn, floor_fn=None,
                 modes: Modes | None = None):
        self.spec, self.modes = spec, modes
        self.x, self.y = train
        self._reference_fn, self._floor_fn = reference_fn, floor_fn
        self._samplers: dict[int, EpochSampler] = {}

    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch:
        sampler = self._samplers.setdefault(seed, EpochSampler(len(self.x), seed))
        idx = sampler.indices(step * local_batch * world + rank * local_batch, local_batch)
        return Batch(x=self.x[idx].to(device), y=self.y[idx].to(device), step=step,
                     random=StepRandom(seed, step, rank, world, local_batch, device))

    def reference(self, n: int) -> tuple[Tensor, Tensor]:
        """The samples metrics compare against (toys: ``n`` fresh held-out draws)."""
        return self._reference_fn(n)

    def floor(self, n: int) -> tuple[Tensor, Tensor]:
        """A second, independent sample: the data-versus-data floor of a distance (PROTOCOLS.md)."""
        if self._floor_fn is None:
            raise ValueError(f"data '{self.spec.name}' has no independent second sample for a floor")
        return self._floor_fn(n)


def as_float(x) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float32)
