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
    def __init__(self, spec: DataSpec, train: tuple[Tensor, Tensor], sample_fn, modes: Modes | None = None,
                 seed: int = 0):
        self.spec, self.modes, self.seed = spec, modes, seed
        self.x, self.y = train
        self._sample_fn = sample_fn          # (n, seed) -> (x, y): fresh draws for held-out sets
        self._samplers: dict[int, EpochSampler] = {}

    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch:
        sampler = self._samplers.setdefault(seed, EpochSampler(len(self.x), seed))
        idx = sampler.indices(step * local_batch * world + rank * local_batch, local_batch)
        return Batch(x=self.x[idx].to(device), y=self.y[idx].to(device), step=step,
                     random=StepRandom(seed, step, rank, world, local_batch, device))

    def reference(self, n: int) -> tuple[Tensor, Tensor]:
        """Held-out samples the metrics compare against (independent of the training set)."""
        return self._sample_fn(n, self.seed + 1)

    def floor(self, n: int) -> tuple[Tensor, Tensor]:
        """A second, independent held-out sample: data-versus-data floor of a distance (PROTOCOLS.md)."""
        return self._sample_fn(n, self.seed + 2)


def as_float(x) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float32)
