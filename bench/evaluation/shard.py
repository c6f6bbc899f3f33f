"""Evaluation over every process of a run (DESIGN.md section 9, "evaluation scales like training").

Sample i of an evaluation point has noise seed ``seed + i`` and label ``labels[i]`` whatever the world
size: the index range [0, n) is cut into one contiguous shard per rank (``shard``), each rank samples,
decodes and extracts features of its own shard, and only features (never images) travel, to rank 0,
concatenated in rank order so that they come back in sample order (``gather_rows``). Rank 0 computes the
metrics and writes the record; the others wait for it at ``broadcast``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from methods.harness.dist import DistEnv

GATHER_ROWS = 8192          # rows per collective: bounds the padded buffers on the receiving rank


def shard(n: int, env: DistEnv) -> range:
    """This rank's contiguous share of the sample indices [0, n) (sizes differ by at most one)."""
    return range(n * env.rank // env.world, n * (env.rank + 1) // env.world)


def _device(env: DistEnv) -> torch.device:
    return env.device if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_rows(t: Tensor, env: DistEnv) -> Tensor | None:
    """Every rank's rows of ``t`` concatenated in rank order on rank 0 (None elsewhere); one process: ``t``."""
    if env.world == 1:
        return t
    dev = _device(env)
    size = torch.tensor([len(t)], device=dev)
    sizes = [torch.zeros_like(size) for _ in range(env.world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    parts: list[list[Tensor]] = [[] for _ in range(env.world)]
    for start in range(0, max(sizes), GATHER_ROWS):
        rows = min(GATHER_ROWS, max(sizes) - start)
        pad = t.new_zeros((rows, *t.shape[1:]), device=dev)
        mine = t[start:start + rows]
        pad[:len(mine)] = mine.to(dev)
        bufs = [torch.empty_like(pad) for _ in range(env.world)] if env.is_main else None
        dist.gather(pad, bufs, dst=0)
        if env.is_main:
            for r, b in enumerate(bufs):
                parts[r].append(b[:max(0, min(rows, sizes[r] - start))].cpu())
    if not env.is_main:
        return None
    return torch.cat([p for rank_parts in parts for p in rank_parts])


def gather_objects(obj: Any, env: DistEnv) -> list[Any] | None:
    """A small picklable object from every rank, as a list on rank 0 (None elsewhere)."""
    if env.world == 1:
        return [obj]
    out = [None] * env.world if env.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. the guidance scales a search chose)."""
    if env.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_device(env))
    return box[0]
