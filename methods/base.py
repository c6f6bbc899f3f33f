"""The contract between data, methods, backbones and the shared harness.

Conventions (DESIGN.md section 4):
- NFE is measured, never declared: ``bench.sampling`` wraps the network in a counter of rows evaluated
  per image produced. A method's ``check_nfe`` only says which requests it can honour.
- Randomness in training comes from ``Batch`` helpers, which draw the *global* batch from a generator
  seeded by (seed, step) and return this rank's rows, so one process and N processes with the same
  global batch see the same numbers. Sampling noise is per image: image i depends only on seed i.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class DataSpec:
    """What a method needs to know about the data it models."""

    name: str
    shape: tuple[int, ...]            # one sample, e.g. (2,) or (3, 32, 32)
    num_classes: int = 0              # 0: unconditional data (labels may still exist for metrics)
    kind: str = "points"              # "points" (2-D toys) or "images"
    value_range: tuple[float, float] | None = None   # images: (-1, 1)


@dataclass(frozen=True)
class BackboneIO:
    """What a method asks of its backbone: input and output shapes and the conditioning it feeds."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    cond: tuple[str, ...] = ()        # subset of ("t", "r", "y", "alpha", "style")
    num_classes: int = 0              # class embedding size (a null class is added when "y" is used)


class StepRandom:
    """Random draws for one training step, identical on every rank for the global batch.

    Every call draws ``[global_batch, *shape]`` from one generator seeded by (seed, step) and returns
    the rows of this rank, so the sample with global index i gets the same numbers whatever the
    world size is.
    """

    def __init__(self, seed: int, step: int, rank: int, world: int, local_batch: int, device):
        self.generator = torch.Generator().manual_seed(mix_seed(seed, step, 0x5EED))
        self.rows = slice(rank * local_batch, (rank + 1) * local_batch)
        self.global_batch = world * local_batch
        self.device = device

    def _shard(self, t: Tensor) -> Tensor:
        return t[self.rows].to(self.device)

    def randn(self, *shape: int, rows: int | None = None) -> Tensor:
        """Normal draws per sample; ``rows`` draws that many per sample (e.g. several noises each)."""
        per = (rows,) if rows else ()
        return self._shard(torch.randn(self.global_batch, *per, *shape, generator=self.generator))

    def rand(self, *shape: int) -> Tensor:
        return self._shard(torch.rand(self.global_batch, *shape, generator=self.generator))

    def randint(self, high: int, *shape: int) -> Tensor:
        return self._shard(torch.randint(high, (self.global_batch, *shape), generator=self.generator))


@dataclass
class Batch:
    """One rank's share of a training batch."""

    x: Tensor                         # real samples [B, *shape]
    y: Tensor                         # labels [B] (long); zeros for unconditional data
    step: int
    random: StepRandom
    extra: dict[str, Any] = field(default_factory=dict)

    def randn_like_x(self) -> Tensor:
        return self.random.randn(*self.x.shape[1:])


def mix_seed(*parts: int) -> int:
    """Deterministic 63-bit seed from integers (splitmix64 finaliser), stable across processes."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def per_image_noise(seeds: Tensor, shape: tuple[int, ...], device, draws: int = 1) -> Tensor:
    """Noise in which image i depends only on ``seeds[i]``: ``[N, *shape]`` (or ``[N, draws, *shape]``).

    Multi-step stochastic samplers ask for several draws per image at once, so that the noise of
    image i never depends on the batch it was generated in.
    """
    out = torch.empty(len(seeds), draws, *shape)
    for i, s in enumerate(seeds.tolist()):
        out[i] = torch.randn(draws, *shape, generator=torch.Generator().manual_seed(int(s)))
    out = out.to(device)
    return out[:, 0] if draws == 1 else out


class NFEError(ValueError):
    """Raised when a method is asked for a number of function evaluations it cannot do."""


@runtime_checkable
class Method(Protocol):
    """A generative method trained by the shared harness (DESIGN.md section 3)."""

    name: ClassVar[str]
    conditional: bool                 # True: trained and sampled with class labels

    def backbone_io(self, spec: DataSpec) -> BackboneIO:
        """The shapes and conditioning this method needs from its backbone."""

    def build(self, backbone: nn.Module, spec: DataSpec) -> nn.Module:
        """Wrap the backbone with preconditioning or conditioning; returns the trained network."""

    def loss(self, net: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss and diagnostics to log."""

    def sample(self, net: nn.Module, noise_seeds: Tensor, y: Tensor | None, nfe: int,
               guidance: float) -> Tensor:
        """Generate ``len(noise_seeds)`` samples with the requested NFE and guidance."""

    def default_nfe(self) -> list[int]:
        """The NFE grid evaluated when the config does not name one."""

    def check_nfe(self, nfe: int, guidance: float) -> None:
        """Raise ``NFEError`` with a clear message when ``nfe`` is impossible for this method."""

    def state_dict(self) -> dict:
        """Non-parameter state that must survive a resume (e.g. drifting's sample queues)."""

    def load_state_dict(self, state: dict) -> None: ...


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
