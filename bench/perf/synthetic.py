"""A recipe's training set-up on synthetic data of its real shapes, for the perf scripts (``gpu_step``,
``recipe_steps``, ``sampling``, ``gpu_check_fast.sh``).

``build(["recipe=NAME", key=value ...], device)`` composes the run config exactly as ``python -m bench.run
recipe=NAME ...`` composes it (``bench/conf/recipe/``; overrides apply on top) and builds the recipe's method
and backbone for the shape and classes its data config names (4x32x32 latents or 3x256x256 pixels, 1000
classes), fed by keyed random tensors instead of ImageNet. Random stand-ins for the checkpoints a run
loads go through a run's own loading path (timing does not depend on the weights): drifting's MAE encoder
is a randomly initialised MAE ResNet of the ``encoder`` group's architecture written to a temporary
checkpoint (``method.encoder_path``), and the pixel recipes' ConvNeXt-V2 a random ``ConvNextV2Model`` of
the base geometry saved as a local folder (``method.convnext``).

One process's share of the recipe's global step (``ranks=W``: N_c / W classes and train.batch_size / W
real samples; or ``batch=B`` images per process, drifting: generated, N_c = B / N_neg, real samples in the
recipe's proportion). ``tiny=True`` shrinks the generator, the encoders, the batch and the classes (10)
so that every recipe's step runs on a CPU in seconds (tests, ``SMALL=1``). The pixel recipes keep their
class queues in host memory as uint8 (``method.queue_device=cpu queue_dtype=uint8``, as a run does: the
host -> device transfer of the positives is part of the step) with ``method.class_queue=8`` unless an
override says otherwise (1000 x 128 images would be 25 GB; the step's work does not depend on the size).
"""
from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.config import ConfigError, _build, compose_config, plain_config, typed
from bench.data import dataset_entry
from bench.geometry import batch_geometry
from methods.backbones import build_backbone
from methods.base import Batch, DataSpec, StepRandom
from methods.harness.dist import DistEnv
from methods.harness.trainer import TrainConfig, Trainer
from methods.noise import keyed_randint, keyed_randn
from methods.registry import method_class

TINY = ["model.depth=1", "model.hidden=64", "model.heads=4", "model.n_context_tokens=2", "model.n_style_tokens=2",
        "model.style_codebook=4", "encoder.width=8", "encoder.layers=[1,1,1,1]", "data.num_classes=10",
        "data.resolution=64", "train.batch_size=8"]
TINY_DRIFT = ["method.classes_per_step=2", "method.gen_per_class=4", "method.pos_per_class=4",
              "method.unc_per_class=2", "method.class_queue=8", "method.global_queue=16"]
PIXEL_QUEUE = ["method.class_queue=8"]
CONVNEXT = {"base": {"depths": [3, 3, 27, 3], "hidden_sizes": [128, 256, 512, 1024]},   # convnextv2-base
            "tiny": {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 8, 16, 16]}}


class SyntheticSource:
    """Keyed normal images clamped to [-1, 1] and uniform labels of ``spec`` (a harness ``BatchSource``)."""

    def __init__(self, spec: DataSpec):
        self.spec = spec

    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch:
        rows = range(rank * local_batch, (rank + 1) * local_batch)
        x = keyed_randn((seed, step, 0xDA7A), rows, self.spec.shape, device).clamp_(-1, 1)
        y = keyed_randint((seed, step, 0x1ABE1), rows, self.spec.num_classes, (), device)
        return Batch(x=x, y=y, step=step, random=StepRandom(seed, step, rank, world, local_batch, device))


@dataclass
class Setup:
    recipe: str | None         # the composed recipe, if any
    name: str                  # the recipe's name, else the model's
    method_name: str
    method: object
    net: torch.nn.Module
    data: SyntheticSource
    train: TrainConfig
    images_per_step: int       # per process: generated (conditional drifting) or trained
    global_images: int         # the recipe's, per step over all its processes
    geometry: str              # per process: N_c x N_neg x N_pos x N_unc, or "batch B"

    def trainer(self, run_dir: Path, device: torch.device) -> Trainer:
        return Trainer(self.method, self.net, self.data, self.train, run_dir, 0, DistEnv(device=device),
                       log=lambda s: None)

    def gpu_hours(self, images_per_second: float) -> float:
        """Device-hours of the recipe's full step count at its global batch, at this rate per device."""
        return self.train.steps * self.global_images / images_per_second / 3600


def _drifting(plain: dict) -> bool:
    return plain["method"]["name"] == "drifting" and bool(plain["method"].get("conditional"))


def _per_step(plain: dict) -> tuple[int, str]:
    """Images per step (conditional drifting: generated) and the geometry (``bench.geometry``) of ``plain``."""
    g = batch_geometry(plain, None, 1, 0)
    return g.get("generated_per_step", g["batch_size"]), g.get("shape", f"batch {g['batch_size']}")


def compose(overrides: list[str], tiny: bool = False) -> dict:
    """The plain run config of ``overrides`` (``recipe=NAME`` among them), with the tiny and pixel-queue
    settings first so that an override on the command line wins."""
    plain = plain_config(compose_config(overrides))
    first = [*(TINY if tiny else []), *(TINY_DRIFT if tiny and _drifting(plain) else []),
             *(PIXEL_QUEUE if plain["data"]["name"] == "imagenet_pixel" and _drifting(plain) else [])]
    return plain_config(compose_config([*first, *overrides])) if first else plain


def share(plain: dict, ranks: int = 1, batch: int | None = None) -> None:
    """Make ``plain`` one process's share of its global step: of ``ranks`` processes, or ``batch`` images."""
    m, t = plain["method"], plain["train"]
    if not _drifting(plain):
        t["batch_size"] = batch if batch is not None else max(1, t["batch_size"] // ranks)
        return
    per, nc = int(m["gen_per_class"]), int(m["classes_per_step"])
    if batch is not None and batch % per:
        raise ConfigError(f"--batch {batch} must be a multiple of method.gen_per_class={per} (N_c x N_neg)")
    local = batch // per if batch is not None else max(1, nc // ranks)
    t["batch_size"], m["classes_per_step"] = max(local, t["batch_size"] * local // nc), local


def _random_checkpoints(plain: dict, spec: DataSpec, folder: Path, tiny: bool) -> None:
    """Point drifting's ``encoder_path`` (and ``convnext``) at random weights saved in ``folder``."""
    m = plain["method"]
    if m.get("encoder_path") is not None:
        from bench.tasks.pretrain_encoder import EncoderConfig
        from methods.drifting.mae import MAEResNet, save_encoder
        arch = typed("encoder", EncoderConfig, plain["encoder"]).arch()
        m["encoder_path"] = str(folder / f"random-{plain['encoder']['name']}.pt")
        save_encoder(Path(m["encoder_path"]), MAEResNet(spec.shape[0], spec.num_classes, arch), spec,
                     {"random_init": True})
        m["encoder_sha256"] = None
    if m.get("convnext"):
        from transformers import ConvNextV2Config, ConvNextV2Model
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        m["convnext"] = str(folder / "convnext")
        ConvNextV2Model(ConvNextV2Config(**CONVNEXT["tiny" if tiny else "base"])).save_pretrained(m["convnext"])


def build(overrides: list[str], device: torch.device, ranks: int = 1, batch: int | None = None,
          tiny: bool = False, features: bool = True) -> Setup:
    """The method, network and synthetic data of ``overrides`` on ``device``, one process's share (see the
    module doc). ``features=False``: no feature encoders (sampling needs only the generator)."""
    plain = compose(overrides, tiny)
    entry = _build("data", dataset_entry, plain["data"]["name"])
    d_cfg = typed("data", entry.config, plain["data"])
    if not hasattr(d_cfg, "spec"):
        raise ConfigError(f"data '{plain['data']['name']}' has no shape without loading it; use a recipe=NAME "
                          f"(or data=imagenet_latent / imagenet_pixel)")
    spec = d_cfg.spec()
    global_images = _per_step(plain)[0]
    share(plain, ranks, batch)
    m_cls = _build("method", method_class, plain["method"]["name"])
    with tempfile.TemporaryDirectory(prefix="driftbench-perf-") as folder:
        if _drifting(plain) and features:
            _random_checkpoints(plain, spec, Path(folder), tiny)
        elif _drifting(plain):
            plain["method"].update(encoder_path=None, raw_loss=True, convnext=None)
        method = _build("method", m_cls, typed("method", m_cls.Config, plain["method"]))
        if hasattr(method, "configure_backbone"):
            method.configure_backbone(plain["model"])
        if hasattr(method, "check_batch"):
            _build("method", method.check_batch, plain["train"]["batch_size"], 1)
        torch.manual_seed(0)
        with torch.device(device):
            backbone = _build("model", build_backbone, plain["model"], method.backbone_io(spec))
        net = _build("method", method.build, backbone, spec)       # loads the checkpoints as a run does
    train = typed("train", TrainConfig, {**plain["train"], "progress": False})
    recipe, (images, geometry) = plain["choices"].get("recipe"), _per_step(plain)
    return Setup(recipe, recipe or plain["choices"]["model"], plain["method"]["name"], method, net,
                 SyntheticSource(spec), train, images, global_images, geometry)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(trainer: Trainer, net, n: int) -> list[float]:
    """Seconds of ``n`` training steps of ``trainer`` through ``net``, each between device syncs."""
    times = []
    for _ in range(n):
        sync(trainer.env.device)
        t0 = time.perf_counter()
        trainer._step(net)
        trainer.step += 1
        sync(trainer.env.device)
        times.append(time.perf_counter() - t0)
    return times


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA: torch's peak allocation since the last reset; CPU: the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024       # KiB on Linux
