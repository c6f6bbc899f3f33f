"""Training diagnostics kept on the device between log rows, and the non-finite guard.

A step adds its loss, gradient norm and the method's diagnostics (tensors or floats) to running sums
without reading them, so the host never waits for the device inside a step. The guard keeps, on the
device, the first step whose loss or gradient norm was not finite. ``read`` (every ``train.log_every``
steps, before every checkpoint and at the end) brings everything back in one transfer; over several
processes the guard is all-reduced at the log reads (the same steps on every rank) so that every rank
learns of a bad step at the same read; before a checkpoint (whose timing may differ between ranks) each
process checks its own guard: the weights are the same on every rank, so rank 0's guard suffices.
The logged loss and diagnostics are means over the processes too (conditional drifting's per-rank loss
covers only that rank's classes); host floats a method returns stay per process.
"""
from __future__ import annotations

import time

import torch
import torch.distributed as dist
from torch import Tensor

NONE = 2 ** 62                      # "no bad step yet"; a bad step s is coded 4 s + (1 loss | 2 gradient | 3 both)
WHAT = {1: "loss", 2: "gradient norm", 3: "loss and gradient norm"}


class DeviceWindow:
    def __init__(self, device: torch.device, world: int):
        self.device, self.world = device, world
        self.first_bad = torch.full((), NONE, dtype=torch.long, device=device)
        self.last_loss: Tensor | None = None
        self._clear()

    def _clear(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.host: dict[str, float] = {}
        self.n, self.images, self.t0 = 0, 0, time.perf_counter()

    def add(self, step: int, loss: Tensor, grad_norm: Tensor, diag: dict, images: int) -> None:
        bad = (~torch.isfinite(loss)).long() + 2 * (~torch.isfinite(grad_norm)).long()
        self.first_bad = torch.minimum(self.first_bad, torch.where(bad > 0, 4 * step + bad, NONE))
        for k, v in {"loss": loss, "grad_norm": grad_norm, **diag}.items():
            if torch.is_tensor(v):
                v = v.detach().float().reshape(())
                self.sums[k] = self.sums[k] + v if k in self.sums else v
            else:
                self.host[k] = self.host.get(k, 0.0) + float(v)
        self.last_loss = loss.detach()
        self.n += 1
        self.images += images

    def restart_clock(self) -> None:
        self.t0 = time.perf_counter()

    def bad_step(self, collective: bool = True) -> tuple[int, str] | None:
        """(first non-finite step, what was not finite), or None; a device sync. ``collective``: over all
        processes (every rank must call it at the same step), else this process's own."""
        code = self.first_bad.clone()
        if collective and self.world > 1:
            dist.all_reduce(code, op=dist.ReduceOp.MIN)
        code = int(code)
        return None if code == NONE else (code // 4, WHAT[code % 4])

    def read(self) -> tuple[dict[str, float], float, tuple[int, str] | None]:
        """Means since the last read, this window's images per second and the guard; then start anew."""
        keys = list(self.sums)
        values = []
        if keys:
            stacked = torch.stack([self.sums[k] for k in keys])
            if self.world > 1:          # the mean over processes: each rank's loss is its share (its classes)
                dist.all_reduce(stacked)
                stacked /= self.world
            values = stacked.tolist()
        bad = self.bad_step()
        seconds = time.perf_counter() - self.t0
        rate = self.images / seconds if seconds > 0 else 0.0
        means = {k: v / max(self.n, 1) for k, v in zip(keys, values)}
        means.update({k: v / max(self.n, 1) for k, v in self.host.items()})
        self._clear()
        return means, rate, bad

    def final_loss(self) -> float | None:
        return None if self.last_loss is None else float(self.last_loss)
