"""The memorisation check of the paper's Fig. 6: for a sample of generated images, the nearest training
images in a pretrained feature space, with their cosine similarities (1 = the same direction).

The training set is scanned once per command, sharded over the processes like the samples
(``bench.evaluation.shard``): each rank embeds its share of the training images into a ``TrainBank``;
for each evaluation point rank 0 broadcasts the query embeddings (a few hundred rows), every rank finds
the k nearest in its share, and rank 0 merges the candidates (exact: the global top k is among the union
of the per-shard top k). The result is written as ``memorisation_<point>.npz``: ``queries`` uint8
[M, H, W, 3], ``neighbours`` uint8 [M, k, H, W, 3], ``similarity`` [M, k], ``index`` [M, k] (training
indices), which the report draws as grids (numpy only).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bench.evaluation.adm import to_nhwc_uint8
from bench.evaluation.shard import broadcast, gather_rows, shard
from methods.harness.dist import DistEnv

Extract = Callable[[Tensor], Tensor]


def training_images(data, device="cpu") -> tuple[int, Callable[[int, int], Tensor]]:
    """(count, ``get(start, stop) -> images``) of a data source's training images: in-memory sources
    (``data.x``), or the items ``(i, 0)`` of a DataLoader source's dataset (``bench/data/loader.py``), mapped
    to model values and, for latents (``spec.decoded_shape``), decoded to images on ``device``."""
    x = getattr(data, "x", None)
    if isinstance(x, Tensor):
        return len(x), lambda s, e: x[s:e]
    make = getattr(data, "dataset_for", None)
    if make is None:
        raise ValueError(f"data '{data.spec.name}' exposes no training images for the memorisation check")
    from torch.utils.data import DataLoader

    dataset = make(0)
    decode = getattr(data, "decode", None) if data.spec.decoded_shape else None

    def get(s: int, e: int) -> Tensor:
        loader = DataLoader(dataset, batch_size=e - s, sampler=[(i, 0) for i in range(s, e)], collate_fn=data.collate)
        images = data.to_model(next(iter(loader))[0].to(device))
        return (decode(images) if decode is not None else images).float().cpu()

    return data.n, get


def embed(extract: Extract, x: Tensor, batch: int) -> Tensor:
    return torch.cat([F.normalize(extract(c).float(), dim=-1) for c in x.split(batch)])


class TrainBank:
    """This rank's share of the training set, embedded once."""

    def __init__(self, data, extract: Extract, env: DistEnv, batch: int = 256):
        n, get = training_images(data, env.device)
        self.rows, self.get, self.total = shard(n, env), get, n
        parts = [embed(extract, get(s, min(s + batch, self.rows.stop)), batch)
                 for s in range(self.rows.start, self.rows.stop, batch)]
        self.features = torch.cat(parts) if parts else torch.empty(0)

    def nearest(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Top-k cosine similarities [M, k'] and global training indices [M, k'] within this share."""
        if not len(self.features):
            return torch.empty(len(queries), 0), torch.empty(len(queries), 0, dtype=torch.long)
        sims = queries @ self.features.T
        top = sims.topk(min(k, sims.shape[1]), dim=1)
        return top.values, top.indices + self.rows.start


def merge_top(sims: Tensor, idx: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k best of candidate columns (similarity descending, then the smaller index)."""
    order = torch.argsort(idx, dim=1, stable=True)                 # ties: the smaller training index first
    sims, idx = sims.gather(1, order), idx.gather(1, order)
    top = sims.topk(min(k, sims.shape[1]), dim=1, sorted=True)
    return top.values, idx.gather(1, top.indices)


def nearest_training(queries: Tensor | None, bank: TrainBank, extract: Extract, env: DistEnv, k: int,
                     batch: int = 256) -> tuple[Tensor, Tensor] | None:
    """On rank 0: (similarities [M, k], training indices [M, k]) of the queries (given on rank 0 only)."""
    q = embed(extract, queries, batch) if env.is_main else None
    q = broadcast(q, env)
    sims, idx = bank.nearest(q, k)
    # every rank contributes k' columns per query; gather them as rows [M * k'] to keep one collective
    all_sims, all_idx = gather_rows(sims.reshape(-1), env), gather_rows(idx.reshape(-1), env)
    if not env.is_main:
        return None
    per_rank = [c for c in _columns(bank.total, env.world, k)]
    cols_s, cols_i, start = [], [], 0
    for c in per_rank:
        cols_s.append(all_sims[start:start + len(q) * c].view(len(q), c))
        cols_i.append(all_idx[start:start + len(q) * c].view(len(q), c))
        start += len(q) * c
    return merge_top(torch.cat(cols_s, 1), torch.cat(cols_i, 1), k)


def _columns(total: int, world: int, k: int) -> list[int]:
    """Candidates per query each rank returns: k, or its whole share where that is smaller."""
    return [min(k, total * (r + 1) // world - total * r // world) for r in range(world)]


def write_grid(path: Path, queries: Tensor, sims: Tensor, idx: Tensor, get: Callable[[int, int], Tensor],
               value_range, info: dict) -> dict:
    """Write the ``.npz`` the report draws (training images read by ``get``, as ``TrainBank.get``); returns
    the record's summary of the check."""
    flat = idx.reshape(-1).tolist()
    neighbours = torch.cat([get(i, i + 1) for i in flat])
    m, k = idx.shape
    q_img = to_nhwc_uint8(queries, value_range, "round")
    n_img = to_nhwc_uint8(neighbours, value_range, "round").reshape(m, k, *q_img.shape[1:])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, queries=q_img, neighbours=n_img, similarity=sims.numpy(), index=idx.numpy(),
             extractor=np.array(info.get("extractor", "")))
    top1 = sims[:, 0]
    return {**info, "file": path.name, "n_queries": m, "k": k, "top1_similarity_mean": float(top1.mean()),
            "top1_similarity_max": float(top1.max())}
