"""Keyed random draws: the numbers of item k of a stream depend only on (key, k), never on how the items
are split into batches or over processes (DESIGN.md section 9, "every random draw is keyed by (seed, step,
global sample index)").

Items are drawn in fixed blocks of ``BLOCK`` consecutive indices: block b is one call of a torch
generator seeded by ``mix_seed(*key, b)`` on the device the draws live on, and item k is row ``k % BLOCK``
of block ``k // BLOCK``. A batch touching items [s, e) draws only the blocks that overlap it, so a process
draws its own share of a global batch (never the whole batch), and sampling loops over blocks, not over
images (64 times fewer Python iterations than a generator per image). Values are exact across batch sizes
and world sizes on one device type; CPU and CUDA generators give different streams.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

BLOCK = 64


def mix_seed(*parts: int) -> int:
    """Deterministic 63-bit seed from integers (splitmix64 finaliser), stable across processes."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def keyed_rows(key: tuple[int, ...], index: Tensor | range, draw: Callable[[torch.Generator, int], Tensor],
               device) -> Tensor:
    """Rows for item indices ``index`` of the stream ``key``: ``draw(generator, BLOCK)`` makes one block.

    ``index`` is usually a contiguous range (a rank's share, a sampling batch); any indices work."""
    device = torch.device(device)
    if isinstance(index, range) and index.step == 1 and len(index) and index.start >= 0:
        first, last = index.start // BLOCK, (index.stop - 1) // BLOCK
        blocks = [draw(_generator(key, b, device), BLOCK) for b in range(first, last + 1)]
        rows = torch.cat(blocks) if len(blocks) > 1 else blocks[0]
        start = index.start - first * BLOCK
        return rows[start:start + len(index)]
    idx = torch.as_tensor(index, dtype=torch.long).cpu()
    if idx.numel() and int(idx.min()) < 0:
        raise ValueError("keyed draws need item indices >= 0")
    block_of = torch.div(idx, BLOCK, rounding_mode="floor")
    uniq = block_of.unique()
    if not len(uniq):
        return draw(_generator(key, 0, device), BLOCK)[:0]
    rows = torch.cat([draw(_generator(key, int(b), device), BLOCK) for b in uniq.tolist()])
    where = torch.searchsorted(uniq, block_of) * BLOCK + idx % BLOCK
    return rows[where.to(rows.device)]


def _generator(key: tuple[int, ...], block: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(mix_seed(*key, block))


def keyed_randn(key: tuple[int, ...], index: Tensor | range, shape: tuple[int, ...], device,
                dtype=torch.float32) -> Tensor:
    """Standard normals ``[len(index), *shape]``; item k depends only on (key, k)."""
    return keyed_rows(key, index, lambda g, n: torch.randn(n, *shape, generator=g, device=g.device, dtype=dtype),
                      device)


def keyed_rand(key: tuple[int, ...], index: Tensor | range, shape: tuple[int, ...], device) -> Tensor:
    """Uniforms on [0, 1) ``[len(index), *shape]``; item k depends only on (key, k)."""
    return keyed_rows(key, index, lambda g, n: torch.rand(n, *shape, generator=g, device=g.device), device)


def keyed_randint(key: tuple[int, ...], index: Tensor | range, high: int, shape: tuple[int, ...], device) -> Tensor:
    """Integers in [0, high) ``[len(index), *shape]``; item k depends only on (key, k)."""
    return keyed_rows(key, index, lambda g, n: torch.randint(high, (n, *shape), generator=g, device=g.device),
                      device)
