"""torchvision's image sets: ``mnist`` ([1, 28, 28]) and ``cifar10`` ([3, 32, 32]), 10 classes each.

- Pixels 0..255 map linearly to [-1, 1]; labels are the classes. Official splits: train 60,000 / 50,000,
  test 10,000. Training batches come from the train split; generative metrics compare against the whole
  train split (the usual CIFAR-10 FID convention), and the data-versus-data floor is the test split.
- The domain classifier (``bench.metrics.domain``) learns the train split and reports its accuracy on the
  test split (no augmentation; ~99% on MNIST, lower on CIFAR-10: the record carries the number).
- Files live under ``data.root`` (null: ``$DRIFTBENCH_DATA``, else ``./data``), in torchvision's layout:
  ``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` and
  ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}``. ``data.download=true`` fetches them with
  torchvision (network needed; torchvision checks the published md5 sums). MNIST is read by
  ``torchvision.datasets.MNIST``; CIFAR-10's pickled batches are read here, in torchvision's format,
  because its reader refuses any file whose md5 differs from the release (so tests can write small ones).
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.data.tensor_source import ClassifierData, TensorSource
from methods.base import DataSpec

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


@dataclass
class VisionConfig:
    name: str = "mnist"
    root: str | None = None      # null: $DRIFTBENCH_DATA, else ./data
    download: bool = False       # fetch the files with torchvision when missing (network needed)


def data_root(root: str | None) -> Path:
    return Path(root or os.environ.get("DRIFTBENCH_DATA") or "data").expanduser()


def _missing(name: str, root: Path, expected: Path) -> FileNotFoundError:
    return FileNotFoundError(f"data.root={root}: no {name} files (expected {expected}); set data.root=PATH to the "
                             f"folder holding them, or add data.download=true on a machine with network")


def _mnist(root: Path, download: bool) -> tuple[Tensor, ...]:
    from torchvision.datasets import MNIST

    raw = root / "MNIST" / "raw"
    if not download and not all((raw / f).exists() for f in MNIST_FILES):
        raise _missing("MNIST", root, raw / MNIST_FILES[0])
    parts = [MNIST(str(root), train=train, download=download) for train in (True, False)]
    return tuple(t for p in parts for t in (p.data[:, None], p.targets.long()))


def _cifar_batch(path: Path) -> tuple[Tensor, Tensor]:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    x = np.asarray(entry["data"], dtype=np.uint8)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: CIFAR-10 rows must hold 3,072 values (3 x 32 x 32), got an array of shape "
                         f"{x.shape}")
    return torch.from_numpy(x.reshape(-1, 3, 32, 32).copy()), torch.as_tensor(entry["labels"], dtype=torch.long)


def _cifar10(root: Path, download: bool) -> tuple[Tensor, ...]:
    folder = root / CIFAR_DIR
    if download:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)
    if not all((folder / f).exists() for f in (*CIFAR_TRAIN, CIFAR_TEST)):
        raise _missing("CIFAR-10", root, folder / CIFAR_TRAIN[0])
    train = [_cifar_batch(folder / f) for f in CIFAR_TRAIN]
    x_te, y_te = _cifar_batch(folder / CIFAR_TEST)
    return torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), x_te, y_te


READERS = {"mnist": _mnist, "cifar10": _cifar10}
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
DESCRIPTIONS = {"mnist": "MNIST (torchvision; official 60,000/10,000 split)",
                "cifar10": "CIFAR-10 (official 50,000/10,000 split)"}


@lru_cache(maxsize=2)
def vision_arrays(name: str, root: str, download: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test), x in [-1, 1] of shape [n, C, H, W], read once per process."""
    x_tr, y_tr, x_te, y_te = READERS[name](Path(root), download)
    shape = SHAPES[name]
    for x, y in ((x_tr, y_tr), (x_te, y_te)):
        if tuple(x.shape[1:]) != shape or len(x) != len(y) or not len(x):
            raise ValueError(f"data.root={root}: {name} files hold images of shape {tuple(x.shape[1:])} "
                             f"({len(x)} images, {len(y)} labels); expected {shape}")
        if int(y.min()) < 0 or int(y.max()) > 9:
            raise ValueError(f"data.root={root}: {name} labels must be 0..9, found {int(y.min())}..{int(y.max())}")
    to_float = lambda u: u.float() / 127.5 - 1.0       # noqa: E731
    return to_float(x_tr), y_tr, to_float(x_te), y_te


def build_vision(cfg: VisionConfig) -> TensorSource:
    root = str(data_root(cfg.root))
    x_tr, y_tr, x_te, y_te = vision_arrays(cfg.name, root, cfg.download)
    spec = DataSpec(name=cfg.name, shape=SHAPES[cfg.name], num_classes=10, kind="images", value_range=(-1.0, 1.0))
    classifier = ClassifierData(cfg.name, lambda: (x_tr, y_tr, x_te, y_te), 10, DESCRIPTIONS[cfg.name],
                                mode="grey" if cfg.name == "mnist" else "rgb",
                                epochs=2 if cfg.name == "mnist" else 10, min_steps=60)
    return TensorSource(spec, (x_tr, y_tr), reference_fn=lambda n: (x_tr, y_tr),
                        floor_fn=lambda n, draw: (x_te, y_te), classifier=classifier,
                        validation_fn=lambda n: (x_te, y_te))
