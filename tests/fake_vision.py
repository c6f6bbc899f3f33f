"""Small MNIST and CIFAR-10 files in torchvision's on-disk formats, with images a classifier can learn.

MNIST: idx files (big-endian magic 0x0803 / 0x0801 and sizes, then uint8 data). CIFAR-10: pickled dicts
with ``data`` ``[n, 3072]`` uint8 (1024 red, 1024 green, 1024 blue values, row-major) and ``labels``.
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from bench.data.vision import CIFAR_DIR, CIFAR_TEST, CIFAR_TRAIN

# Ten colours of equal mean intensity (85): a classifier reading the grey mean cannot tell them apart.
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 127, 0], [128, 0, 127], [0, 128, 127],
                    [85, 85, 85], [170, 85, 0], [0, 170, 85], [85, 0, 170]], dtype=np.int64)


def mnist_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28x28 noise with a bright 6x6 block at one of ten positions, set by the label."""
    x = rng.integers(0, 60, (len(labels), 28, 28))
    for i, k in enumerate(labels):
        r, c = 1 + 7 * (k // 3), 1 + 9 * (k % 3)
        x[i, r:r + 6, c:c + 6] = 255
    return x.astype(np.uint8)


def cifar_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """32x32 RGB images of one colour per class, plus noise: ``[n, 3, 32, 32]``."""
    noise = rng.integers(-20, 21, (len(labels), 3, 32, 32))
    return np.clip(COLOURS[labels][:, :, None, None] + noise, 0, 255).astype(np.uint8)


def write_mnist(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        x = mnist_images(y, rng)
        (raw / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x0803, n, 28, 28) + x.tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, n) + y.astype(np.uint8).tobytes())
        out[split] = x
    return out


def write_cifar10(root: Path, n_per_batch: int = 60, n_test: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = root / CIFAR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in [*((f, n_per_batch) for f in CIFAR_TRAIN), (CIFAR_TEST, n_test)]:
        y = rng.permutation(np.arange(n) % 10)
        x = cifar_images(y, rng)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x.reshape(n, -1), "labels": y.tolist(), "batch_label": name}, f)
        out[name] = x
    return out
