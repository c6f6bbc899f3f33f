"""The sampler's optional fast paths (``eval.compile``, ``eval.cuda_graphs``, ``eval.precision``).

- ``compile``: ``torch.compile`` of the network the sampler calls (inductor; on CPUs its C++ backend);
- ``cuda_graphs``: each distinct call (input shapes, dtypes, autocast state) is captured once in a CUDA
  graph and replayed, removing the launch overhead that dominates one-step sampling at small batches;
  with ``compile`` too, inductor's own CUDA graphs (``mode="reduce-overhead"``) are used instead;
- ``precision``: ``bf16`` runs the sampler under bf16 autocast, the way the network was trained on GPUs.
The network is wrapped *inside* the NFE counter, so measured NFE is unchanged; outputs are copied out of
graph memory before the caller sees them (a multi-step solver keeps earlier evaluations).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class SamplingOptions:
    precision: str = "fp32"           # fp32 | bf16 (autocast)
    compile: bool = False
    cuda_graphs: bool = False
    throughput_repeats: int = 3       # timed full evaluation batches (median and spread)

    def validate(self, device: torch.device) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"eval.precision must be train, fp32 or bf16, got '{self.precision}'")
        if self.cuda_graphs and torch.device(device).type != "cuda":
            raise ValueError(f"eval.cuda_graphs needs a CUDA device, this run samples on {device}; "
                             "set eval.cuda_graphs=false")
        if self.throughput_repeats < 1:
            raise ValueError(f"eval.throughput_repeats must be >= 1, got {self.throughput_repeats}")

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")


class _Copied(nn.Module):
    """Returns a copy of the wrapped network's output (inductor's CUDA graphs reuse their output memory)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return self.net(x, *args, **kwargs).clone()


class CudaGraphed(nn.Module):
    """Replays one captured CUDA graph per call signature of ``net(x, cond)``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.graphs: dict = {}

    def forward(self, x: Tensor, cond: dict | None = None) -> Tensor:
        cond = dict(cond or {})
        key = (tuple(x.shape), x.dtype, torch.is_autocast_enabled(x.device.type),
               tuple((k, tuple(v.shape), v.dtype) if torch.is_tensor(v) else (k, v) for k, v in sorted(cond.items())))
        if key not in self.graphs:
            self.graphs[key] = self._capture(x, cond)
        static_x, static_cond, out, graph = self.graphs[key]
        static_x.copy_(x)
        for k, v in static_cond.items():
            if torch.is_tensor(v):
                v.copy_(cond[k])
        graph.replay()
        return out.clone()

    def _capture(self, x: Tensor, cond: dict):
        static_x = x.clone()
        static_cond = {k: v.clone() if torch.is_tensor(v) else v for k, v in cond.items()}
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):           # warm-up outside the graph (lazy init, workspaces)
            for _ in range(2):
                self.net(static_x, static_cond)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self.net(static_x, static_cond)
        return static_x, static_cond, out, graph


def fast_network(net: nn.Module, options: SamplingOptions, device: torch.device) -> nn.Module:
    """``net`` as the sampler should call it under ``options`` (validated first)."""
    options.validate(device)
    if options.compile:
        mode = "reduce-overhead" if options.cuda_graphs else None
        return _Copied(torch.compile(net, mode=mode, dynamic=False))
    if options.cuda_graphs:
        return CudaGraphed(net)
    return net
