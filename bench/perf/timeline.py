"""Where the time of one training step goes, marked by hooks without extra device syncs.

``Timeline.mark(name)`` records a CUDA event on the current stream (on CPUs, the wall clock, which is the
device's clock there); ``phases()`` synchronises once and turns the marks of one step into durations.
``attach`` puts the marks in the harness's own step: the data source's ``batch`` call, forward hooks on
the generator and the feature encoder (summed over calls), gradient hooks on the loss (the backward pass
starts) and on the generator's output (the backward pass reaches the generator), and the gradient clip
(the optimiser phase: clip, AdamW, EMA).
"""
from __future__ import annotations

import time
from collections import defaultdict

import torch


class Timeline:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[str, object]] = []

    def start(self) -> None:
        self.marks = []
        self.mark("start")

    def mark(self, name: str) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append((name, ev))
        else:
            self.marks.append((name, time.perf_counter()))

    def _seconds(self, a, b) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a

    def phases(self) -> dict[str, float]:
        """Seconds per phase of the step just marked (one device sync)."""
        self.mark("end")
        if self.cuda:
            torch.cuda.synchronize()
        at = defaultdict(list)
        for name, t in self.marks:
            at[name].append(t)
        first = lambda n: at[n][0]                                     # noqa: E731
        gen_fwd = sum(self._seconds(a, b) for a, b in zip(at["gen_fwd_start"], at["gen_fwd_end"]))
        enc_fwd = sum(self._seconds(a, b) for a, b in zip(at["enc_fwd_start"], at["enc_fwd_end"]))
        bwd_gen = first("gen_bwd_start") if at["gen_bwd_start"] else first("opt_start")
        forward = self._seconds(first("data_end"), first("bwd_start"))
        return {
            "data": self._seconds(first("start"), first("data_end")),
            "generator_forward": gen_fwd,
            "encoder_forward": enc_fwd,
            "loss_and_rest_forward": forward - gen_fwd - enc_fwd,
            "loss_and_encoder_backward": self._seconds(first("bwd_start"), bwd_gen),
            "generator_backward": self._seconds(bwd_gen, first("opt_start")),
            "optimiser": self._seconds(first("opt_start"), first("end")),
        }


def attach(line: Timeline, trainer, encoder) -> callable:
    """Install the marks in ``trainer``'s step; returns a function that removes them."""
    handles, data, method = [], trainer.data, trainer.method
    batch_fn, loss_fn, step_fn = data.batch, method.loss, trainer._clip_gradients

    def batch(*a, **k):
        out = batch_fn(*a, **k)
        line.mark("data_end")
        return out

    def loss(*a, **k):
        value, diag = loss_fn(*a, **k)
        value.register_hook(lambda g: line.mark("bwd_start"))
        return value, diag

    def clip():
        line.mark("opt_start")
        return step_fn()

    def gen_out(module, inputs, output):
        line.mark("gen_fwd_end")
        if output.requires_grad:
            output.register_hook(lambda g: line.mark("gen_bwd_start"))

    handles.append(trainer.net.register_forward_pre_hook(lambda m, i: line.mark("gen_fwd_start")))
    handles.append(trainer.net.register_forward_hook(gen_out))
    if encoder is not None:
        handles.append(encoder.register_forward_pre_hook(lambda m, i: line.mark("enc_fwd_start")))
        handles.append(encoder.register_forward_hook(lambda m, i, o: line.mark("enc_fwd_end")))
    data.batch, method.loss, trainer._clip_gradients = batch, loss, clip

    def detach():
        for h in handles:
            h.remove()
        data.batch, method.loss, trainer._clip_gradients = batch_fn, loss_fn, step_fn
    return detach
