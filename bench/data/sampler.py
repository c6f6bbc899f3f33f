"""Stateless epoch shuffling: the indices of global sample k = step * batch + j are a function of
(seed, k) alone, so any step can be reproduced without data-loader state (exact resume, DDP shards)."""
from __future__ import annotations

import torch

from methods.noise import mix_seed


class EpochSampler:
    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.n, self.seed = n, seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0xDA7A))
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def indices(self, start: int, count: int) -> torch.Tensor:
        """Dataset indices of global samples ``start .. start + count - 1`` (each epoch a permutation)."""
        k = torch.arange(start, start + count)
        epochs, pos = k // self.n, k % self.n
        out = torch.empty(count, dtype=torch.long)
        for e in epochs.unique().tolist():
            sel = epochs == e
            out[sel] = self._perm(e)[pos[sel]]
        return out
