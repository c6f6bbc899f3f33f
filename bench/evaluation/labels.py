"""Class labels of the samples of an evaluation point (``eval.labels``).

FID-50K as the release computes it (PAPER.md section 6) draws 50 samples per class: the 50,000 labels
of the ImageNet validation set, which holds exactly 50 images per class. Sample i gets label
``labels[i]`` whatever the world size. Choices:

- ``balanced`` (default): classes in turn, ``i mod C``: for n = 50 C exactly 50 per class, the same
  multiset as the validation labels, and every contiguous block of C samples holds each class once, so
  Inception-Score splits and the ADM evaluator's unshuffled splits of 5,000 see every class.
- ``blocks``: class by class, ``i // (n / C)``: the order of the validation set read through an
  ImageFolder (class folders sorted), as the release's PyTorch loader iterates it. The multiset (and so
  FID) is the same as ``balanced``; an evaluator that splits samples in order for IS must shuffle first
  (torch-fidelity does, ADM's evaluator does not).
- a PATH to ``.npy``, ``.txt`` (one integer per line) or ``.npz`` (``arr_1`` as ADM writes labels, or
  ``labels``): exactly these labels, e.g. the validation ground truth in the standard class index.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CHOICES = "balanced, blocks or a PATH (.npy, .txt, .npz)"


def read_label_file(path: str) -> np.ndarray:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"eval.labels={path}: no such file (choose {CHOICES})")
    if p.suffix == ".txt":
        return np.loadtxt(p, dtype=np.int64, ndmin=1)
    if p.suffix == ".npy":
        return np.load(p, allow_pickle=False)
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            key = next((k for k in ("arr_1", "labels") if k in z.files), None)
            if key is None:
                raise ValueError(f"eval.labels={path}: the .npz holds {z.files}, no 'arr_1' or 'labels'")
            return z[key]
    raise ValueError(f"eval.labels={path}: unknown file type '{p.suffix}' (choose {CHOICES})")


def eval_labels(choice: str, n: int, num_classes: int) -> Tensor:
    """The n labels of an evaluation point; ``ValueError`` (one line) when they cannot be made."""
    if num_classes < 1:
        raise ValueError("eval.labels: the data has no classes")
    if choice == "balanced":
        return torch.arange(n) % num_classes
    if choice == "blocks":
        per = -(-n // num_classes)
        return torch.arange(n) // per
    labels = np.asarray(read_label_file(choice))
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"eval.labels={choice}: expected one integer label per sample, got {labels.dtype} "
                         f"of shape {labels.shape}")
    if len(labels) < n:
        raise ValueError(f"eval.labels={choice} holds {len(labels)} labels, fewer than eval.num_samples={n}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"eval.labels={choice}: labels must lie in [0, {num_classes}), found "
                         f"{labels.min()}..{labels.max()}")
    return torch.from_numpy(labels[:n].astype(np.int64))
