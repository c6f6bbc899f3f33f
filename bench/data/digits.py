"""Real, offline image data: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).

- ``digits``: ``[1, 8, 8]`` images in [-1, 1] (pixel values 0..16 mapped linearly), label = digit.
  A fixed stratified split holds out 20% (``test``) for classifiers; generative metrics compare
  against all 1,797 images, as CIFAR-10 FID compares against its training set.
- ``stacked_digits``: three digits drawn independently and stacked as channels, ``[3, 8, 8]``; the label
  is d1 * 100 + d2 * 10 + d3, one of 1,000 modes (the Stacked-MNIST protocol of VEEGAN/PacGAN at 8x8).

Validation split (tuning, the choice of EMA): the held-out 20% (for stacked digits, triples of held-out
digits). Training never sees it; digits' reference (all 1,797 images, the report's) does include it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from bench.data.tensor_source import ClassifierData, TensorSource, as_float
from bench.data.toy import FLOOR_DRAWS, floor_seed
from methods.base import DataSpec

SPLIT_SEED = 0          # the train/test split is part of the dataset's identity


@lru_cache(maxsize=1)
def digits_arrays() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test) with x in [-1, 1] of shape [n, 1, 8, 8]."""
    from sklearn.datasets import load_digits          # imported here: scikit-learn is slow to import
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = as_float(d.images)[:, None] / 8.0 - 1.0
    y = torch.as_tensor(d.target, dtype=torch.long)
    idx_tr, idx_te = train_test_split(torch.arange(len(y)).numpy(), test_size=0.2, random_state=SPLIT_SEED,
                                      stratify=y.numpy())
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


def all_digits() -> tuple[Tensor, Tensor]:
    x_tr, y_tr, x_te, y_te = digits_arrays()
    return torch.cat([x_tr, x_te]), torch.cat([y_tr, y_te])


def stack_digits(x: Tensor, y: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` images made of three independently drawn digits as channels; label d1*100 + d2*10 + d3."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(x), (n, 3), generator=g)
    return x[idx][:, :, 0], y[idx[:, 0]] * 100 + y[idx[:, 1]] * 10 + y[idx[:, 2]]


def digits_classifier(mode: str) -> ClassifierData:
    """The digit classifier's data: the stratified split above; stacked digits classify each channel."""
    return ClassifierData("digits", digits_arrays, 10, "digits (scikit-learn 8x8, stratified 80/20 split, seed 0)",
                          mode=mode, epochs=8)


@dataclass
class DigitsConfig:
    name: str = "digits"
    n_train: int = 50_000     # stacked_digits only: size of the stacked training set
    seed: int = 0             # stacked_digits only: which triples are drawn


def build_digits(cfg: DigitsConfig) -> TensorSource:
    x_tr, y_tr, x_te, y_te = digits_arrays()
    if cfg.name == "digits":
        spec = DataSpec(name="digits", shape=(1, 8, 8), num_classes=10, kind="images", value_range=(-1.0, 1.0))
        return TensorSource(spec, (x_tr, y_tr), reference_fn=lambda n: all_digits(),
                            classifier=digits_classifier("grey"), validation_fn=lambda n: (x_te, y_te))
    if cfg.n_train < 1:
        raise ValueError(f"data.n_train must be >= 1, got {cfg.n_train}")
    spec = DataSpec(name="stacked_digits", shape=(3, 8, 8), num_classes=1000, kind="images",
                    value_range=(-1.0, 1.0))
    x_all, y_all = all_digits()
    return TensorSource(spec, stack_digits(x_tr, y_tr, cfg.n_train, cfg.seed),
                        reference_fn=lambda n: stack_digits(x_all, y_all, n, cfg.seed + 1),
                        floor_fn=lambda n, draw: stack_digits(x_all, y_all, n, floor_seed(cfg.seed, draw)),
                        classifier=digits_classifier("stacked"), floor_draws=FLOOR_DRAWS,
                        validation_fn=lambda n: stack_digits(x_te, y_te, n, cfg.seed + 3))
