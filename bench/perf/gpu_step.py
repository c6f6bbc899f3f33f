"""``python -m bench.perf.gpu_step recipe=NAME [--batch 256] [--tiny] [--device cuda] [--steps 10] [--out PATH]
[key=value ...]``: the anatomy of one training step in the shared harness.

On synthetic data of the recipe's real shapes (``bench.perf.synthetic``: the recipe as ``bench.run
recipe=NAME`` composes it, one process's share of ``--batch`` images, drifting: generated; ``--tiny`` at
CPU size) it builds the harness's own ``Trainer`` with the run's fast path (``train.*`` overrides apply:
bf16, compile, fused AdamW, ...) and prints, after warm-up steps:

- the steady-state step time (median and range over ``--steps`` synchronised steps), images/s and peak
  memory; the number of host synchronisations inside one step (CUDA's sync debug mode);
- FLOPs per step counted by ``torch.utils.flop_counter`` on one eager step (generator and feature encoder
  apart), and model FLOPs utilisation against a table of dense bf16 peaks of known GPUs and against a
  bf16 matmul peak measured here, both printed;
- the breakdown of an eager step into data, generator forward, feature-encoder forward, drift loss (and
  the rest of the method's forward: queues, feature statistics), loss + encoder backward, generator
  backward and optimiser (clip, AdamW, EMA), timed by CUDA events between hooks (no extra syncs);
- the recipe's cost: GPU-hours to its full step count at its global batch at this rate, beside the
  release's accelerator count (``RELEASE_ACCELERATORS``).
The matched baselines on the same backbone are their own recipes (``recipe=flow_latent_b2``,
``diffusion_latent_b2``, ``meanflow_latent_b2``).
The JSON written to ``--out`` (default ``results/perf/``) feeds the report's "cost to reproduce" table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.config import ConfigError
from bench.perf.peaks import matmul_peak, table_peak
from bench.perf.synthetic import Setup, build, peak_memory_bytes, timed_steps
from bench.perf.timeline import Timeline, attach
from methods.harness.fast_path import prepare_feature_modules
from methods.harness.trainer import Trainer

PHASES = ("data", "generator_forward", "encoder_forward", "loss_and_rest_forward", "loss_and_encoder_backward",
          "generator_backward", "optimiser")
# PAPER.md 0.2 (the release's README): 64 TPU v6e chips for the ablation run, 128 for the final models.
RELEASE_ACCELERATORS = {"drifting_ablation": 64, "drifting_latent_b2": 128, "drifting_latent_l2": 128,
                        "drifting_pixel_b16": 128, "drifting_pixel_l16": 128}


def syncs_per_step(trainer: Trainer, net) -> int | None:
    """Host synchronisations in one step, as CUDA's sync debug mode reports them (None off CUDA)."""
    if trainer.env.device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer._step(net)
            trainer.step += 1
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def count_flops(trainer: Trainer, encoder) -> dict[str, int]:
    """FLOPs of one eager forward + backward (all, and the generator's and the encoder's own)."""
    batch = trainer.data.batch(trainer.step, trainer.seed, 0, 1, trainer.local_batch, trainer.env.device)
    with FlopCounterMode(display=False) as counter:
        trainer._forward_backward(trainer.net, batch)
    trainer.opt.zero_grad(set_to_none=True)
    by_module = counter.get_flop_counts()            # outermost modules are named by their class

    def total(module) -> int:
        return int(sum(by_module.get(type(module).__name__, {}).values())) if module is not None else 0
    return {"total": int(counter.get_total_flops()), "generator": total(trainer.net), "encoder": total(encoder)}


def breakdown(trainer: Trainer, encoder, n: int) -> dict[str, float]:
    """Median seconds per phase over ``n`` eager steps (``Timeline``: CUDA events or wall clock)."""
    line = Timeline(trainer.env.device)
    detach = attach(line, trainer, encoder)
    per = {p: [] for p in PHASES}
    try:
        for _ in range(n):
            line.start()
            trainer._step(trainer.net)
            trainer.step += 1
            for k, v in line.phases().items():
                per[k].append(v)
    finally:
        detach()
    return {k: statistics.median(v) for k, v in per.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.perf.gpu_step")
    ap.add_argument("--batch", type=int, default=256, help="images per GPU step (drifting: generated)")
    ap.add_argument("--tiny", action="store_true", help="CPU-sized generator, encoders and classes")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default=None, help="JSON output (default results/perf/gpu_step-<name>-<method>-<device>.json)")
    args, overrides = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    device = torch.device(args.device)
    torch.set_flush_denormal(True)
    try:
        setup = build(overrides, device, batch=args.batch, tiny=args.tiny)
    except ConfigError as e:
        print(f"bench.perf.gpu_step: error: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as run_dir:
        result = measure(setup.trainer(Path(run_dir), device), setup, args)
    out = Path(args.out or f"results/perf/gpu_step-{setup.name}-{setup.method_name}-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    report(result)
    print(f"wrote {out}")
    return 0


def measure(trainer: Trainer, setup: Setup, args) -> dict:
    device = trainer.env.device
    encoder = next(iter(getattr(setup.method, "feature_modules", lambda: [])()), None)
    prepare_feature_modules(setup.method, replace(trainer.fast, compile=False), device)   # channels-last
    flops = count_flops(trainer, encoder)               # eager, before anything is compiled
    timed_steps(trainer, trainer.net, 1)
    phases = breakdown(trainer, encoder, max(2, args.steps // 2))   # eager steps: hooks between phases
    net = trainer._train_net()
    prepare_feature_modules(setup.method, trainer.fast, device)
    timed_steps(trainer, net, args.warmup)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = timed_steps(trainer, net, args.steps)
    step = statistics.median(times)
    peak_table, gpu = table_peak(device)
    peak_measured = matmul_peak(device)
    ips = setup.images_per_step / step
    return {
        "kind": "gpu_step", "recipe": setup.recipe, "name": setup.name, "method": setup.method_name,
        "model_params": sum(p.numel() for p in setup.net.parameters()), "device": str(device), "gpu_name": gpu,
        "torch": torch.__version__, "fast_path": trainer.fast.as_record(), "images_per_step": setup.images_per_step,
        "step_seconds": {"median": step, "min": min(times), "max": max(times), "n": len(times)},
        "images_per_second": ips,
        "peak_memory_bytes": peak_memory_bytes(device), "geometry": setup.geometry,
        "syncs_per_step": syncs_per_step(trainer, net),
        "flops_per_step": flops, "flops_per_image": flops["total"] / setup.images_per_step,
        "achieved_tflops": flops["total"] / step / 1e12,
        "peak_tflops_table": peak_table, "peak_tflops_measured": peak_measured,
        "mfu_table": flops["total"] / step / 1e12 / peak_table if peak_table else None,
        "mfu_measured": flops["total"] / step / 1e12 / peak_measured if peak_measured else None,
        "breakdown_seconds": phases,
        "recipe_steps": setup.train.steps, "recipe_global_batch": setup.global_images,
        "release_accelerators": RELEASE_ACCELERATORS.get(setup.recipe),
        "gpu_hours_to_full": setup.gpu_hours(ips) if setup.recipe else None,
    }


def report(r: dict) -> None:
    s = r["step_seconds"]
    print(f"{r['name']} / {r['method']}: {r['model_params']:,} parameters, {r['images_per_step']} images per step, "
          f"{r['device']} ({r['gpu_name'] or 'no GPU'}), fast path {r['fast_path']}")
    print(f"step: median {s['median'] * 1e3:.1f} ms (min {s['min'] * 1e3:.1f}, max {s['max'] * 1e3:.1f}, n {s['n']}); "
          f"{r['images_per_second']:,.1f} images/s; peak memory "
          f"{(r['peak_memory_bytes'] or 0) / 2 ** 30:.2f} GiB; host syncs per step: {r['syncs_per_step']}")
    f = r["flops_per_step"]
    print(f"FLOPs per step {f['total'] / 1e9:,.2f} G (generator {f['generator'] / 1e9:,.2f} G, encoder "
          f"{f['encoder'] / 1e9:,.2f} G, the rest: the drift loss); achieved {r['achieved_tflops']:.3f} TFLOP/s")
    print(f"MFU: {_pct(r['mfu_table'])} of the table's bf16 peak ({r['peak_tflops_table'] or 'unknown'} TFLOP/s), "
          f"{_pct(r['mfu_measured'])} of the measured matmul peak ({r['peak_tflops_measured']:.1f} TFLOP/s)")
    total = sum(r["breakdown_seconds"].values())
    print(f"breakdown of an eager step ({total * 1e3:.1f} ms in all): " + ", ".join(
        f"{k} {v * 1e3:.1f} ms ({100 * v / total:.0f}%)" for k, v in r["breakdown_seconds"].items()))
    if r["gpu_hours_to_full"]:
        used = f" (the release used {r['release_accelerators']} accelerators)" if r["release_accelerators"] else ""
        print(f"recipe {r['recipe']}: {r['recipe_steps']:,} steps x {r['recipe_global_batch']} images = "
              f"{r['gpu_hours_to_full']:,.1f} device-hours on this device at this rate{used}")


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
