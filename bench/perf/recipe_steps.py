"""``python -m bench.perf.recipe_steps [RECIPE ...] [--ranks W] [--steps 5] [--warmup 2] [--device cuda]
[--tiny] [key=value ...]``: a few training steps of each recipe on synthetic data of its real shapes.

Each recipe (all of ``bench/conf/recipe/`` by default) is composed exactly as ``python -m bench.run
recipe=NAME`` composes it (``key=value`` overrides apply on top), its method and backbone are built, and
the harness's own ``Trainer`` runs its real step (loss, backward, clipping, AdamW, EMA) on keyed random
tensors of the data's real shape (4x32x32 latents or 3x256x256 pixels, 1000 classes). Drifting's feature
encoder is a randomly initialised MAE ResNet of the recipe's encoder architecture, and the pixel recipes'
ConvNeXt-V2 a random ``ConvNextV2Model`` of the base geometry (timing does not depend on the weights).

``--ranks W`` times one process's share of a W-process run: N_c / W classes and train.batch_size / W real
samples per step (the release ran the ablation on 64 accelerators and the final models on 128; one GPU
cannot hold a whole step of 4,096-8,192 generated images with every feature map). ``--tiny`` shrinks the
generator, the encoders, the batch and the class count (10) so that every recipe's step runs on a CPU in
seconds (tested).

Memory note: the class queues hold ``1000 x class_queue`` samples per process; the pixel recipes keep
them in host memory as the uint8 pixels they were (``method.queue_device=cpu queue_dtype=uint8``: 25 GB
per process, as the release's host banks). Pixel recipes are timed with ``method.class_queue=8`` unless
an override says otherwise (the step's compute and transfers do not depend on the queue's size).

Prints per recipe: the per-rank geometry, steps/s and generated (or trained) images/s after warm-up
(device synchronised), peak memory (CUDA: max allocated; CPU: the process's peak resident set), and the
GPU-hours of the recipe's full step count on W such processes at this rate.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.config import ConfigError, _build, compose_config, plain_config, typed
from methods.backbones import build_backbone
from methods.base import Batch, DataSpec, StepRandom, count_parameters
from methods.harness.dist import DistEnv
from methods.harness.trainer import TrainConfig, Trainer
from methods.noise import keyed_randint, keyed_randn
from methods.registry import method_class

RECIPE_DIR = Path(__file__).resolve().parents[1] / "conf" / "recipe"
DATA_SHAPES = {"imagenet_latent": (4, 32, 32), "imagenet_pixel": (3, 256, 256)}
TINY = ["model.depth=1", "model.hidden=64", "model.heads=4", "model.n_context_tokens=2", "model.n_style_tokens=2",
        "model.style_codebook=4", "encoder.width=8", "encoder.layers=[1,1,1,1]"]
TINY_DRIFT = ["method.classes_per_step=2", "method.gen_per_class=4", "method.pos_per_class=4",
              "method.unc_per_class=2", "method.class_queue=8", "method.global_queue=16"]
TINY_CONVNEXT = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 8, 16, 16]}
BASE_CONVNEXT = {"depths": [3, 3, 27, 3], "hidden_sizes": [128, 256, 512, 1024]}   # convnextv2-base


class SyntheticSource:
    """Keyed random training batches of a shape (values in [-1, 1]) and labels in [0, classes)."""

    def __init__(self, spec: DataSpec):
        self.spec = spec

    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch:
        rows = range(rank * local_batch, (rank + 1) * local_batch)
        x = keyed_randn((seed, step, 0xDA7A), rows, self.spec.shape, device).clamp_(-1, 1)
        y = keyed_randint((seed, step, 0x1AB), rows, self.spec.num_classes, (), device)
        return Batch(x=x, y=y, step=step, random=StepRandom(seed, step, rank, world, local_batch, device))


def recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def per_rank(plain: dict, ranks: int) -> list[str]:
    """Overrides that make one process do one rank's share of a ``ranks``-process step."""
    out = [f"train.batch_size={max(1, plain['train']['batch_size'] // ranks)}"]
    if plain["method"].get("conditional") and plain["method"]["name"] == "drifting":
        out.append(f"method.classes_per_step={max(1, plain['method']['classes_per_step'] // ranks)}")
    return out


def attach_random_encoders(method, plain: dict, spec: DataSpec, tiny: bool) -> None:
    """Give conditional drifting random stand-ins for the checkpoints a real run loads."""
    step = getattr(method, "cond_step", None)
    if step is None or plain["method"].get("encoder_path") is None:
        return
    from bench.tasks.pretrain_encoder import EncoderConfig
    from methods.drifting.encoder import ResNetEncoder
    step.encoder = ResNetEncoder(spec.shape[0], typed("encoder", EncoderConfig, plain["encoder"]).arch())
    step.encoder.requires_grad_(False).eval()
    if plain["method"].get("convnext"):
        from transformers import ConvNextV2Config, ConvNextV2Model

        from methods.drifting.convnext import ConvNeXtFeatures
        step.convnext = ConvNeXtFeatures(ConvNextV2Model(ConvNextV2Config(**(TINY_CONVNEXT if tiny else BASE_CONVNEXT))))


PIXEL_QUEUE = "method.class_queue=8"


def build(recipe: str, overrides: list[str], ranks: int, tiny: bool, device: torch.device) -> tuple[Trainer, dict]:
    base = [f"recipe={recipe}", *(TINY if tiny else [])]
    plain = plain_config(compose_config(base))
    if plain["data"]["name"] == "imagenet_pixel" and not any(o.startswith("method.class_queue=") for o in overrides):
        base.append(PIXEL_QUEUE)
    extra = [*(TINY_DRIFT if tiny and plain["method"].get("conditional") and plain["method"]["name"] == "drifting"
               else []), *(["train.batch_size=8"] if tiny else [])]
    plain = plain_config(compose_config([*base, *extra, *overrides]))
    plain = plain_config(compose_config([*base, *extra, *per_rank(plain, ranks), *overrides]))
    shape = DATA_SHAPES.get(plain["data"]["name"])
    if shape is None:
        raise ConfigError(f"recipe '{recipe}': no synthetic shape for data '{plain['data']['name']}'")
    spec = DataSpec(name=plain["data"]["name"], shape=shape, num_classes=10 if tiny else 1000, kind="images",
                    value_range=(-1.0, 1.0))
    m_cls = _build("method", method_class, plain["method"]["name"])
    method = _build("method", m_cls, typed("method", m_cls.Config, plain["method"]))
    if hasattr(method, "configure_backbone"):
        method.configure_backbone(plain["model"])
    torch.manual_seed(0)
    attach_random_encoders(method, plain, spec, tiny)
    net = method.build(build_backbone(plain["model"], method.backbone_io(spec)), spec)
    train = typed("train", TrainConfig, {**plain["train"], "progress": False})
    run_dir = Path(tempfile.mkdtemp(prefix="recipe_steps-"))
    return Trainer(method, net, SyntheticSource(spec), train, run_dir, 0, DistEnv(device=device), log=lambda s: None), plain


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20       # KiB on Linux


def time_recipe(recipe: str, overrides: list[str], ranks: int, steps: int, warmup: int, tiny: bool,
                device: torch.device) -> dict:
    trainer, plain = build(recipe, overrides, ranks, tiny, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    net, times = trainer._train_net(), []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        trainer._step(net)
        trainer.step += 1
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    m = plain["method"]
    drifting = m["name"] == "drifting" and m.get("conditional")
    images = m["classes_per_step"] * m["gen_per_class"] if drifting else plain["train"]["batch_size"]
    rate = 1.0 / statistics.median(times)
    return {"recipe": recipe, "params": count_parameters(trainer.net), "ranks": ranks, "images_per_step": images,
            "geometry": (f"{m['classes_per_step']} x {m['gen_per_class']} x {m['pos_per_class']} x "
                         f"{m['unc_per_class']}" if drifting else f"batch {images}"),
            "steps_per_s": rate, "images_per_s": rate * images, "peak_gb": peak_memory_gb(device),
            "gpu_hours": plain["train"]["steps"] * ranks / rate / 3600}


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
