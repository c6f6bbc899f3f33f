"""``python -m bench.perf.recipe_steps [RECIPE ...] [--ranks W] [--steps 5] [--warmup 2] [--device cuda]
[--tiny] [key=value ...]``: a few training steps of each recipe on synthetic data of its real shapes.

Each recipe (all of ``bench/conf/recipe/`` by default) is built by ``bench.perf.synthetic`` as ``python -m
bench.run recipe=NAME`` composes it (``key=value`` overrides apply on top), with random stand-ins for its
MAE encoder and ConvNeXt-V2, and the harness's own ``Trainer`` runs its real step (loss, backward,
clipping, AdamW, EMA) on keyed random tensors of the data's shape.

``--ranks W`` times one process's share of a W-process run: N_c / W classes and train.batch_size / W real
samples per step (the release ran the ablation on 64 accelerators and the final models on 128; one GPU
cannot hold a whole step of 4,096-8,192 generated images with every feature map). ``--tiny``: every
recipe's step at CPU size, in seconds (tested). The pixel recipes are timed with their class queues in
host memory as uint8, ``method.class_queue=8`` (``bench.perf.synthetic``).

Prints per recipe: the per-rank geometry, steps/s and generated (or trained) images/s after warm-up
(device synchronised), peak memory (CUDA: max allocated; CPU: the process's peak resident set), and the
GPU-hours of the recipe's full step count at its global batch at this rate.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench.config import ConfigError
from bench.perf.synthetic import build, peak_memory_bytes, timed_steps
from methods.base import count_parameters

RECIPE_DIR = Path(__file__).resolve().parents[1] / "conf" / "recipe"


def recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def time_recipe(recipe: str, overrides: list[str], ranks: int, steps: int, warmup: int, tiny: bool,
                device: torch.device) -> dict:
    setup = build([f"recipe={recipe}", *overrides], device, ranks=ranks, tiny=tiny)
    with tempfile.TemporaryDirectory(prefix="recipe_steps-") as run_dir:
        trainer = setup.trainer(Path(run_dir), device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        net = trainer._train_net()
        rate = 1.0 / statistics.median(timed_steps(trainer, net, warmup + steps)[warmup:])
    return {"recipe": recipe, "params": count_parameters(setup.net), "geometry": setup.geometry,
            "steps_per_s": rate, "images_per_s": rate * setup.images_per_step,
            "peak_gb": peak_memory_bytes(device) / 2 ** 30, "gpu_hours": setup.gpu_hours(rate * setup.images_per_step)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.perf.recipe_steps")
    ap.add_argument("recipes", nargs="*", help=f"default: all ({', '.join(recipes())})")
    ap.add_argument("--ranks", type=int, default=1, help="time one process's share of this many")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="CPU-sized generator, encoders and batch")
    args, rest = ap.parse_known_args(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in rest if "=" in a and not a.startswith("-")]
    unknown = [a for a in rest if a not in overrides] + [r for r in args.recipes if r not in recipes()]
    if unknown or args.ranks < 1 or args.steps < 1:
        print(f"bench.perf.recipe_steps: error: unknown {unknown or 'values'}; recipes: {', '.join(recipes())}; "
              f"--ranks and --steps must be >= 1", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    print(f"{'recipe':24s} {'params':>12s} {'per-rank geometry':>22s} {'steps/s':>8s} {'img/s':>9s} "
          f"{'peak GB':>8s} {'GPU-h (full)':>12s}   device {device}, {args.ranks} rank(s), {args.steps} steps")
    for name in args.recipes or recipes():
        try:
            r = time_recipe(name, overrides, args.ranks, args.steps, args.warmup, args.tiny, device)
        except ConfigError as e:
            print(f"bench.perf.recipe_steps: error: {e}", file=sys.stderr)
            return 2
        print(f"{r['recipe']:24s} {r['params']:>12,} {r['geometry']:>22s} {r['steps_per_s']:8.3g} "
              f"{r['images_per_s']:9.4g} {r['peak_gb']:8.2f} {r['gpu_hours']:12.4g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
