"""The contract between data, methods, backbones and the shared harness.

Conventions (DESIGN.md section 4):
- NFE is measured, never declared: ``bench.sampling`` wraps the network in a counter of rows evaluated
  per image produced. A method's ``check_nfe`` only says which requests it can honour.
- Randomness in training comes from ``Batch`` helpers, keyed by (seed, step, global sample index): each
  rank draws only its own rows, and one process and N processes with the same global batch see the same
  numbers. Sampling noise is per image: image i depends only on seed i (``methods.noise``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from methods.noise import keyed_rand, keyed_randint, keyed_randn


@dataclass(frozen=True)
class DataSpec:
    """What a method needs to know about the data it models."""

    name: str
    shape: tuple[int, ...]            # one sample, e.g. (2,) or (3, 32, 32)
    num_classes: int = 0              # 0: unconditional data (labels may still exist for metrics)
    kind: str = "points"              # "points" (2-D toys) or "images"
    value_range: tuple[float, float] | None = None   # images: (-1, 1); latents: that of the decoded images
    decoded_shape: tuple[int, ...] | None = None     # latents (VAE): samples are decoded to images of this shape
                                                     # by the data's ``decode`` before metrics


@dataclass(frozen=True)
class BackboneIO:
    """What a method asks of its backbone: input and output shapes and the conditioning it feeds."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    cond: tuple[str, ...] = ()        # subset of ("t", "r", "y", "alpha", "style")
    num_classes: int = 0              # class embedding size (a null class is added when "y" is used)


class StepRandom:
    """Random draws for one training step, keyed by (seed, step, draw number, global sample index).

    Each call is one keyed stream (``methods.noise``): this rank draws only its own rows
    ``[rank * local_batch, (rank + 1) * local_batch)`` of the global batch, and the sample with global
    index i gets the same numbers whatever the world size (calls must come in the same order on every
    rank, as they do in a method's ``loss``).
    """

    def __init__(self, seed: int, step: int, rank: int, world: int, local_batch: int, device):
        self.seed, self.step, self.calls = seed, step, 0
        self.rows = range(rank * local_batch, (rank + 1) * local_batch)
        self.global_batch = world * local_batch
        self.device = device

    def _key(self) -> tuple[int, ...]:
        self.calls += 1
        return (self.seed, self.step, 0x5EED, self.calls)

    def randn(self, *shape: int, rows: int | None = None) -> Tensor:
        """Normal draws per sample; ``rows`` draws that many per sample (e.g. several noises each)."""
        per = (rows,) if rows else ()
        return keyed_randn(self._key(), self.rows, (*per, *shape), self.device)

    def rand(self, *shape: int) -> Tensor:
        return keyed_rand(self._key(), self.rows, shape, self.device)

    def randint(self, high: int, *shape: int) -> Tensor:
        return keyed_randint(self._key(), self.rows, high, shape, self.device)


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


SAMPLE_STREAM = 0x5A3F1E   # the key of sampling noise: image i's noise is item seeds[i] of this stream


def per_image_noise(seeds: Tensor, shape: tuple[int, ...], device, draws: int = 1) -> Tensor:
    """Noise in which image i depends only on ``seeds[i]``: ``[N, *shape]`` (or ``[N, draws, *shape]``).

    Drawn on ``device`` in blocks of consecutive seeds (``methods.noise``), without a loop over images.
    Multi-step stochastic samplers ask for several draws per image at once, so that the noise of image i
    never depends on the batch it was generated in.
    """
    out = keyed_randn((SAMPLE_STREAM, draws), seeds, (draws, *shape), device)
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
