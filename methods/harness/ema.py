"""Exponential moving averages of the weights at several decays at once, evaluated by name.

Built on ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``: as the official drifting
release (``TrainState.ema_params`` starts as the initial parameters), every average starts at the
network's weights when the set is made and then follows W_ema <- decay * W_ema + (1 - decay) * W after each
step (``AveragedModel`` alone would copy W at the first update instead). Buffers are averaged too.
``update`` applies the same averaging function as ``AveragedModel.update_parameters`` without reading its
device counter (the library reads it twice per update, a host sync in every training step).
"""
from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_name(decay: float) -> str:
    return f"ema_{decay:g}"


class EMASet(nn.Module):
    def __init__(self, net: nn.Module, decays: list[float]):
        super().__init__()
        bad = [d for d in decays if not 0.0 < d < 1.0]
        if bad:
            raise ValueError(f"train.ema decays must lie in (0, 1), got {bad}")
        self.models = nn.ModuleDict({
            ema_name(d).replace(".", "_"): AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True)
            for d in decays})
        self.decays = {ema_name(d): d for d in decays}
        for m in self.models.values():
            m.requires_grad_(False)
            m.n_averaged.fill_(1)          # the copy made above is the first average: the initial weights

    def names(self) -> list[str]:
        return list(self.decays)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        src = [t.detach() for t in itertools.chain(net.parameters(), net.buffers())]
        for key, m in self.models.items():
            dst = [t.detach() for t in itertools.chain(m.module.parameters(), m.module.buffers())]
            groups: dict = {}
            for d, s in zip(dst, src):
                pair = groups.setdefault((d.device, d.dtype), ([], []))
                pair[0].append(d)
                pair[1].append(s)
            for ds, ss in groups.values():
                m.multi_avg_fn(ds, ss, m.n_averaged)
            m.n_averaged += 1

    def model(self, name: str) -> nn.Module:
        if name not in self.decays:
            raise KeyError(f"no EMA named '{name}'; this run keeps: {', '.join(['raw', *self.decays])}")
        return self.models[name.replace(".", "_")].module
