"""Sample generation with measured NFE and wall-clock (DESIGN.md section 4).

- NFE is measured by ``NFECounter``: network rows evaluated per image produced. A guided step that runs
  a separate unconditional pass evaluates two rows per image and so counts double.
- Sample i uses noise seed ``seed + i`` alone, so it does not depend on the batch it was generated in.
- Timing excludes a warm-up batch, synchronises the device, and reports the batch size, device,
  precision (parameter dtype, autocast) and peak device memory. Only the sampling calls are timed:
  ``on_batch`` (metric feature extraction, streaming) runs outside the clock.
- Latent models: ``decode`` (the data's VAE decoder) maps each batch to images before ``on_batch`` and
  before it is kept; its time is ``decode_seconds``, apart from ``sample_seconds``, and both are in
  ``total_seconds`` (DESIGN.md section 4, PROTOCOLS.md "Timing").
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from methods.base import Method


class NFECounter(nn.Module):
    """Counts the rows (images) the wrapped network is evaluated on."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.rows = 0

    def forward(self, x: Tensor, *args, **kwargs):
        self.rows += x.shape[0]
        return self.net(x, *args, **kwargs)


@dataclass
class Generated:
    samples: Tensor              # [n, *shape] on the CPU
    labels: Tensor | None
    nfe_measured: float
    timing: dict


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _precision(net: nn.Module, device: torch.device) -> str:
    dtype = str(next(net.parameters()).dtype).replace("torch.", "")
    autocast = torch.is_autocast_enabled(device.type)
    return f"autocast {str(torch.get_autocast_dtype(device.type)).replace('torch.', '')}" if autocast else dtype


@torch.no_grad()
def generate(method: Method, net: nn.Module, n: int, seed: int, nfe: int, guidance: float,
             batch_size: int, labels: Tensor | None = None, latency_repeats: int = 5,
             on_batch: Callable[[Tensor, Tensor | None], None] | None = None, keep: int | None = None,
             decode: Callable[[Tensor], Tensor] | None = None) -> Generated:
    """Generate ``n`` samples with per-image seeds ``seed .. seed + n - 1``.

    ``on_batch(samples, labels)`` receives every batch (on the CPU) as it is produced, e.g. to stream it
    through the metrics' feature extractors; ``keep`` samples (None: all) are returned in ``samples``."""
    method.check_nfe(nfe, guidance)
    device = next(net.parameters()).device
    counter = NFECounter(net).eval()
    seeds = torch.arange(seed, seed + n, dtype=torch.long)
    chunks = [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]

    def run(sl: slice) -> Tensor:
        y = labels[sl].to(device) if labels is not None else None
        return method.sample(counter, seeds[sl], y, nfe, guidance)

    warm = run(chunks[0])                                 # warm-up, not timed, not counted
    if decode is not None:
        decode(warm)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    counter.rows = 0
    seconds, decode_seconds, out, kept = 0.0, 0.0, [], 0
    for sl in chunks:
        t0 = time.perf_counter()
        x = run(sl)
        _sync(device)
        seconds += time.perf_counter() - t0
        if decode is not None:
            t0 = time.perf_counter()
            x = decode(x)
            _sync(device)
            decode_seconds += time.perf_counter() - t0
        x = x.float().cpu()
        if on_batch is not None:
            on_batch(x, labels[sl] if labels is not None else None)
        if keep is None or kept < keep:
            out.append(x if keep is None else x[: keep - kept])
            kept += len(out[-1])
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    nfe_measured = counter.rows / n
    latencies = []
    for _ in range(latency_repeats + 1):                  # batch 1, the first repeat is warm-up
        t = time.perf_counter()
        run(slice(0, 1))
        _sync(device)
        latencies.append(time.perf_counter() - t)
    timing = {
        "sample_seconds": round(seconds, 6),
        "seconds_per_image": seconds / n,
        "images_per_second": n / seconds if seconds > 0 else float("inf"),
        "batch_size": min(batch_size, n),
        "latency_batch1_seconds": statistics.median(latencies[1:]) if latency_repeats else None,
        "latency_repeats": latency_repeats,
        "device": str(device),
        "precision": _precision(net, device),
        "peak_memory_bytes": peak,           # CUDA only: torch's peak allocation while sampling the batches
    }
    if decode is not None:
        timing.update(decode_seconds=round(decode_seconds, 6), total_seconds=round(seconds + decode_seconds, 6),
                      total_images_per_second=n / (seconds + decode_seconds))
    kept_labels = labels[:kept] if labels is not None else None
    return Generated(torch.cat(out) if out else torch.empty(0), kept_labels, nfe_measured, timing)
