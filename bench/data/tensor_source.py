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


SPLITS = ("test", "validation")


class Source:
    """What every data source offers besides training batches: functions ``n -> (x, y)`` for the metrics'
    reference set (what the report shows) and a validation split (what tuning and the choice of EMA see,
    never shown), and, where the data can supply them, independent samples ``(n, draw) -> (x, y)`` for
    data-versus-data floors (``floor_draws`` of them)."""

    def __init__(self, spec: DataSpec, reference_fn, floor_fn=None, modes: Modes | None = None,
                 classifier: ClassifierData | None = None, validation_fn=None, floor_draws: int = 1):
        self.spec, self.modes, self.classifier = spec, modes, classifier
        self._reference_fn, self._floor_fn, self._validation_fn = reference_fn, floor_fn, validation_fn
        self.floor_draws = floor_draws if floor_fn is not None else 0

    def reference(self, n: int) -> tuple[Tensor, Tensor]:
        """The samples metrics compare against (toys: ``n`` fresh held-out draws)."""
        return self._reference_fn(n)

    def floor(self, n: int, draw: int = 0) -> tuple[Tensor, Tensor]:
        """Independent sample number ``draw``: the data-versus-data floor of a distance (PROTOCOLS.md)."""
        if self._floor_fn is None:
            raise ValueError(f"data '{self.spec.name}' has no independent second sample for a floor")
        if not 0 <= draw < self.floor_draws:
            raise ValueError(f"data '{self.spec.name}' has {self.floor_draws} independent floor draw(s), not {draw + 1}")
        return self._floor_fn(n, draw)

    def validation(self, n: int) -> tuple[Tensor, Tensor]:
        """The validation split: held out from training and from the reference the report shows."""
        if self._validation_fn is None:
            raise ValueError(f"data '{self.spec.name}' has no validation split")
        return self._validation_fn(n)


class ValidationView:
    """``data`` as an evaluation on the validation split sees it: ``reference(n)`` is ``validation(n)``."""

    def __init__(self, data):
        self._data = data

    def __getattr__(self, key):
        return getattr(self._data, key)

    def reference(self, n: int) -> tuple[Tensor, Tensor]:
        return self._data.validation(n)


def on_split(data, split: str):
    """The data an evaluation on ``split`` ("test": the report's reference; "validation") compares with."""
    if split not in SPLITS:
        raise ValueError(f"eval.split must be one of {list(SPLITS)}, got '{split}'")
    return data if split == "test" else ValidationView(data)


class TensorSource(Source):
    """Training tensors held in memory, served as per-rank shards of seeded global batches."""

    def __init__(self, spec: DataSpec, train: tuple[Tensor, Tensor], reference_fn, floor_fn=None,
                 modes: Modes | None = None, classifier: ClassifierData | None = None, validation_fn=None,
                 floor_draws: int = 1):
        super().__init__(spec, reference_fn, floor_fn, modes, classifier, validation_fn, floor_draws)
        self.x, self.y = train
        self._samplers: dict[int, EpochSampler] = {}

    def preflight(self) -> list[tuple[str, bool, str]]:
        """``bench.doctor``'s line about this source (loaded, so its files were found and read)."""
        return [("data", True, f"{self.spec.name}: {len(self.x)} training samples of shape {list(self.spec.shape)} "
                               f"in memory")]

    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch:
        sampler = self._samplers.setdefault(seed, EpochSampler(len(self.x), seed))
        idx = sampler.indices(step * local_batch * world + rank * local_batch, local_batch)
        return Batch(x=self.x[idx].to(device), y=self.y[idx].to(device), step=step,
                     random=StepRandom(seed, step, rank, world, local_batch, device))


def as_float(x) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float32)
