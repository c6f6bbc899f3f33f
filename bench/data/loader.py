"""On-disk data served through a real ``torch.utils.data.DataLoader`` behind the trainer's source interface.

The trainer asks a source for ``batch(step, seed, rank, world, local_batch, device)``. A ``LoaderSource``
keeps one DataLoader (worker processes, pinned memory on CUDA, persistent workers, prefetch) whose batch
sampler (``StepBatchSampler``) yields this rank's items for steps ``start, start + 1, ...``: global sample
``k = step * global_batch + j`` is dataset index ``EpochSampler(n, seed).indices(k)`` (the order of the
in-memory sources, ``bench/data/tensor_source.py``), rank r takes ``j`` in ``[r * local_batch, (r + 1) *
local_batch)``. Items are ``(dataset index, k)`` pairs so that a dataset keys its augmentation by k. A call
for any step other than the next one restarts the iterator at that step, so a resumed run reads exactly
what an uninterrupted one would. Datasets return ``(x, y)`` with ``x`` uint8 (images) or float16
(latents); ``to_model`` maps a batch to the model's float values on the device.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from bench.data.sampler import EpochSampler
from bench.data.tensor_source import Source
from methods.base import Batch, DataSpec, StepRandom


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Infinite: for steps ``start, start + 1, ...`` this rank's ``[(dataset index, global index)]``."""

    def __init__(self, n: int, seed: int, rank: int, world: int, local_batch: int):
        self.order = EpochSampler(n, seed)
        self.rank, self.world, self.local_batch = rank, world, local_batch
        self.start = 0

    def items(self, step: int) -> list[tuple[int, int]]:
        first = step * self.local_batch * self.world + self.rank * self.local_batch
        idx = self.order.indices(first, self.local_batch).tolist()
        return list(zip(idx, range(first, first + self.local_batch)))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while True:
            yield self.items(step)
            step += 1


def uint8_to_unit(x: Tensor) -> Tensor:
    """uint8 pixels 0..255 -> float in [-1, 1] (the convention of every image source here)."""
    return x.float().div_(127.5).sub_(1.0)


class LoaderSource(Source):
    """A data source whose training batches come from a DataLoader (see module doc).

    ``dataset_for(seed)`` builds the map-style dataset of ``n`` items ``(index, k)``; ``to_model`` maps
    the collated ``x`` on the device to model values; ``reference_fn`` / ``floor_fn`` as ``Source``."""

    def __init__(self, spec: DataSpec, n: int, dataset_for: Callable[[int], Dataset], num_workers: int,
                 prefetch: int, reference_fn, floor_fn=None, to_model: Callable[[Tensor], Tensor] = uint8_to_unit,
                 collate: Callable | None = None):
        if num_workers < 0 or prefetch < 1:
            raise ValueError(f"data.num_workers must be >= 0 and data.prefetch >= 1, got {num_workers}, {prefetch}")
        super().__init__(spec, reference_fn, floor_fn)
        self.n = n
        self.dataset_for, self.num_workers, self.prefetch = dataset_for, num_workers, prefetch
        self.to_model, self.collate = to_model, collate
        self._loader: DataLoader | None = None
        self._geometry: tuple | None = None
        self._it: Iterator | None = None
        self._next = -1

    def _make_loader(self, geometry: tuple, device: torch.device) -> DataLoader:
        seed, rank, world, local_batch = geometry
        self.sampler = StepBatchSampler(self.n, seed, rank, world, local_batch)
        workers = self.num_workers
        return DataLoader(self.dataset_for(seed), batch_sampler=self.sampler, num_workers=workers,
                          pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                          prefetch_factor=self.prefetch if workers else None, collate_fn=self.collate)

    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch:
        device = torch.device(device)
        geometry = (seed, rank, world, local_batch)
        if self._loader is None or geometry != self._geometry:
            self.close()
            self._loader, self._geometry = self._make_loader(geometry, device), geometry
        if self._it is None or step != self._next:
            self.sampler.start = step
            self._it = iter(self._loader)       # persistent workers: the same processes, a fresh order
        x, y = next(self._it)
        self._next = step + 1
        x = self.to_model(x.to(device, non_blocking=True))
        return Batch(x=x, y=y.to(device, non_blocking=True), step=step,
                     random=StepRandom(seed, step, rank, world, local_batch, device))

    def close(self) -> None:
        """Let the worker processes go (dropping the loader and its iterator shuts them down)."""
        self._it = self._loader = None
