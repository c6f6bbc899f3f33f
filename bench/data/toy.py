"""2-D toy distributions. Labels are the mixture component of each point.

- ``ring8``: 8 Gaussians, means (cos 2 pi i/8, sin 2 pi i/8), std 0.01 (VEEGAN; PacGAN).
- ``grid25``: 25 Gaussians, means on {-4,-2,0,2,4}^2, std 0.05 (VEEGAN; PacGAN).
- ``bimodal``: 2 Gaussians at (+-1, 0), std 0.1 (the paper's Fig. 3 setting is unpublished; our choice).
- ``checkerboard``: uniform on the 8 black squares of a 4x4 board over [-1, 1]^2 (label = square).
- ``swissroll``: t in [1.5 pi, 4.5 pi], (t cos t, t sin t) / 4.5 pi plus N(0, 0.03^2) noise
  (the official drifting notebook's settings; a single component, label 0).
- ``moons``: scikit-learn's two moons (noise 0.05), centred and scaled to about [-1, 1] (label = moon).
- ``overlap``: two classes that share a component (PAPER.md 12.9, the CFG toy): Gaussians of std 0.15 at
  (-1, 0), (0, 0), (1, 0); class 0 is an even mix of the first two, class 1 of the last two, so the middle
  component is p(.|0) and p(.|1) alike. Mode weights 1/4, 1/2, 1/4.

``+data.scale=S`` multiplies a toy's coordinates (and its modes' means and std), for scale-robustness
studies (PAPER.md 12.8); the data yamls leave the key out (default 1), so records made before it match.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from bench.data.tensor_source import Modes, TensorSource, as_float
from methods.base import DataSpec


def _mixture(means: Tensor, std: float) -> tuple[Callable, Modes]:
    k = len(means)
    weights = torch.full((k,), 1.0 / k)

    def sample(n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(k, (n,), generator=g)
        return means[y] + std * torch.randn(n, 2, generator=g), y

    return sample, Modes(means=means, std=std, weights=weights)


def ring8() -> tuple[Callable, Modes]:
    a = 2 * math.pi * torch.arange(8) / 8
    return _mixture(torch.stack([torch.cos(a), torch.sin(a)], 1), 0.01)


def grid25() -> tuple[Callable, Modes]:
    v = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    return _mixture(torch.cartesian_prod(v, v), 0.05)


def bimodal() -> tuple[Callable, Modes]:
    return _mixture(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 0.1)


OVERLAP_MEANS = torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
OVERLAP_STD = 0.15


def overlap() -> tuple[Callable, Modes]:
    def sample(n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(2, (n,), generator=g)
        comp = y + torch.randint(2, (n,), generator=g)
        return OVERLAP_MEANS[comp] + OVERLAP_STD * torch.randn(n, 2, generator=g), y

    return sample, Modes(means=OVERLAP_MEANS, std=OVERLAP_STD, weights=torch.tensor([0.25, 0.5, 0.25]))


def checkerboard(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    cells = torch.tensor([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    y = torch.randint(len(cells), (n,), generator=g)
    x = (cells[y] + torch.rand(n, 2, generator=g)) / 2 - 1    # 4x4 board of side-0.5 squares on [-1, 1]^2
    return x, y


def swissroll(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / (4.5 * math.pi)
    return x + 0.03 * torch.randn(n, 2, generator=g), torch.zeros(n, dtype=torch.long)


def moons(n: int, seed: int) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import make_moons   # scikit-learn is slow to import; only moons needs it

    x, y = make_moons(n, noise=0.05, random_state=np.random.RandomState(seed % 2**32))
    x = (x - np.array([0.5, 0.25])) / 1.5
    return as_float(x), torch.as_tensor(y, dtype=torch.long)


TOYS: dict[str, Callable[[], tuple[Callable, Modes | None]]] = {
    "ring8": ring8,
    "grid25": grid25,
    "bimodal": bimodal,
    "checkerboard": lambda: (checkerboard, None),
    "swissroll": lambda: (swissroll, None),
    "moons": lambda: (moons, None),
    "overlap": overlap,
}
NUM_CLASSES = {"ring8": 8, "grid25": 25, "bimodal": 2, "checkerboard": 8, "swissroll": 1, "moons": 2, "overlap": 2}


FLOOR_DRAWS = 5         # independent data-versus-data floor samples: an interval for each floor


def floor_seed(seed: int, draw: int) -> int:
    """Draw 0 is the floor sample of earlier records (seed + 2); later draws stay clear of the reference
    (seed + 1) and validation (seed + 3) seeds."""
    return seed + 2 + 1000 * draw


@dataclass
class ToyConfig:
    name: str = "ring8"
    n_train: int = 100_000
    seed: int = 0           # the dataset's own seed: the same data whatever the run's seed
    scale: float = 1.0      # multiplies the coordinates (and the modes)


def _scaled(sample: Callable, modes: Modes | None, c: float) -> tuple[Callable, Modes | None]:
    if c == 1.0:
        return sample, modes
    if modes is not None:
        modes = Modes(means=modes.means * c, std=modes.std * c, weights=modes.weights)
    return (lambda n, seed: (lambda x, y: (x * c, y))(*sample(n, seed))), modes


def build_toy(cfg: ToyConfig) -> TensorSource:
    if cfg.n_train < 1:
        raise ValueError(f"data.n_train must be >= 1, got {cfg.n_train}")
    if not cfg.scale > 0:
        raise ValueError(f"data.scale must be > 0, got {cfg.scale}")
    sample, modes = _scaled(*TOYS[cfg.name](), cfg.scale)
    spec = DataSpec(name=cfg.name, shape=(2,), num_classes=NUM_CLASSES[cfg.name], kind="points")
    return TensorSource(spec, sample(cfg.n_train, cfg.seed), reference_fn=lambda n: sample(n, cfg.seed + 1),
                        floor_fn=lambda n, draw: sample(n, floor_seed(cfg.seed, draw)), modes=modes,
                        validation_fn=lambda n: sample(n, cfg.seed + 3), floor_draws=FLOOR_DRAWS)
