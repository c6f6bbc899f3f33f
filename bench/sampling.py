"""Sample generation with measured NFE and wall-clock (DESIGN.md section 4).

- NFE is measured by ``NFECounter``: network rows evaluated per image produced. A guided step that runs
  a separate unconditional pass evaluates two rows per image and so counts double.
- Sample i uses noise seed ``seed + i`` alone, so it does not depend on the batch it was generated in.
- Timing excludes a warm-up batch of every batch size, synchronises the device, and reports the batch
  size, device, precision (parameter dtype, autocast), compile and CUDA-graph switches, peak device
  memory, and this process's CPU time with the load average (a loaded machine slows the clock).
  Throughput at the evaluation batch is the median (and range) over full batches, with extra repeats of
  one batch when the pass has fewer than ``throughput_repeats``; batch-1 latency is the median (and range)
  of ``latency_repeats`` calls after a warm-up call. A ``decode`` step (VAE) is timed apart and added in
  ``total_seconds_per_image``, and at batch 1 in ``latency_batch1_total_seconds`` (PROTOCOLS.md "Timing":
  latent models include the decode and report it separately). Only the sampling calls are timed:
  ``on_batch`` (metric feature extraction, streaming) runs outside the clock.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from bench.sampling_fast import SamplingOptions, fast_network
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


def _precision(net: nn.Module, options: SamplingOptions) -> str:
    return "autocast bf16" if options.precision == "bf16" else str(next(net.parameters()).dtype).replace("torch.", "")


def spread(values: list[float]) -> dict | None:
    """Median and range of repeated measurements (None when there are none)."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


@torch.no_grad()
def generate(method: Method, net: nn.Module, n: int, seed: int, nfe: int, guidance: float,
             batch_size: int, labels: Tensor | None = None, latency_repeats: int = 5,
             on_batch: Callable[[Tensor, Tensor | None], None] | None = None, keep: int | None = None,
             options: SamplingOptions | None = None,
             decode: Callable[[Tensor], Tensor] | None = None) -> Generated:
    """Generate ``n`` samples with per-image seeds ``seed .. seed + n - 1``.

    ``on_batch(samples, labels)`` receives every batch (on the CPU) as it is produced, e.g. to stream it
    through the metrics' feature extractors; ``keep`` samples (None: all) are returned in ``samples``.
    ``options``: precision, compile, CUDA graphs and timed repeats (``bench.sampling_fast``); ``decode``
    maps sampled latents to images on the device (a VAE), timed apart from sampling and in the total."""
    method.check_nfe(nfe, guidance)
    opts = options or SamplingOptions()
    device = next(net.parameters()).device
    counter = NFECounter(fast_network(net, opts, device)).eval()
    seeds = torch.arange(seed, seed + n, dtype=torch.long)
    chunks = [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    full = chunks[0].stop - chunks[0].start

    def run(sl: slice) -> Tensor:
        y = labels[sl].to(device) if labels is not None else None
        with opts.autocast(device):
            return method.sample(counter, seeds[sl], y, nfe, guidance)

    def timed(fn: Callable[[], Tensor]) -> tuple[Tensor, float]:
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        return out, time.perf_counter() - t0

    for sl in {c.stop - c.start: c for c in chunks}.values():   # warm-up of every batch size: not timed
        x = run(sl)
        if decode is not None:
            decode(x)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    counter.rows = 0
    seconds, decode_seconds, cpu, rates, out, kept = 0.0, 0.0, 0.0, [], [], 0
    for sl in chunks:
        c0 = time.process_time()
        x, dt = timed(lambda: run(sl))
        cpu += time.process_time() - c0
        seconds += dt
        if sl.stop - sl.start == full:
            rates.append(full / dt)
        if decode is not None:
            x, dt = timed(lambda: decode(x))
            decode_seconds += dt
        x = x.float().cpu()
        if on_batch is not None:
            on_batch(x, labels[sl] if labels is not None else None)
        if keep is None or kept < keep:
            out.append(x if keep is None else x[: keep - kept])
            kept += len(out[-1])
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    nfe_measured = counter.rows / n
    while len(rates) < opts.throughput_repeats:             # repeats of one full evaluation batch
        rates.append(full / timed(lambda: run(chunks[0]))[1])

    def latency() -> tuple[float, float]:        # batch 1: sampling, then decoding (0 without a decode)
        x, dt = timed(lambda: run(slice(0, 1)))
        return dt, timed(lambda: decode(x))[1] if decode is not None else 0.0
    lat = [latency() for _ in range(latency_repeats + 1)][1:]     # first: warm-up
    latencies = [s for s, _ in lat]
    timing = {
        "sample_seconds": round(seconds, 6),
        "seconds_per_image": seconds / n,
        "images_per_second": n / seconds if seconds > 0 else float("inf"),
        "throughput_images_per_second": spread(rates),     # per full batch, before decoding
        "batch_size": full,
        "latency_batch1_seconds": statistics.median(latencies) if latencies else None,
        "latency_batch1": spread(latencies),
        "latency_batch1_total_seconds": statistics.median(s + d for s, d in lat) if lat and decode is not None else None,
        "latency_repeats": latency_repeats,
        "decode_seconds": round(decode_seconds, 6) if decode is not None else None,
        "total_seconds_per_image": (seconds + decode_seconds) / n,    # sampling + decoding
        "device": str(device),
        "precision": _precision(net, opts),
        "compile": opts.compile,
        "cuda_graphs": opts.cuda_graphs,
        "peak_memory_bytes": peak,           # CUDA only: torch's peak allocation while sampling the batches
        "cpu_seconds": round(cpu, 6),        # this process's CPU time (all threads) over sample_seconds
        "load_avg_1m": os.getloadavg()[0],   # the machine's; with cpu_seconds, tells a loaded machine (bench/report)
    }
    if decode is not None:
        timing.update(total_seconds=round(seconds + decode_seconds, 6),
                      total_images_per_second=n / (seconds + decode_seconds))
    kept_labels = labels[:kept] if labels is not None else None
    return Generated(torch.cat(out) if out else torch.empty(0), kept_labels, nfe_measured, timing)
