"""Training and sampling set-ups of a recipe's real shapes on synthetic data, for the perf scripts.

A recipe here is a PAPER.md Table 8 column written as overrides of the run config (until the ImageNet
``recipe`` config group lands, ``--recipe NAME`` picks one of ``RECIPES``; ``model=``/``method=``/
``encoder=`` overrides work on their own or on top). The data are keyed random tensors of the model's
nominal shape and classes, so no dataset is needed; drifting's feature encoder is a randomly initialised
MAE ResNet of the recipe's width, written to a temporary checkpoint and loaded by the real loading path
(timing does not depend on the weights). ``batch`` images per process and step: drifting generates them
(N_c = batch / N_neg classes), the baselines train on as many, on the same backbone.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.config import ConfigError, _build, compose_config, plain_config, typed
from methods.backbones import build_backbone
from methods.base import Batch, DataSpec, StepRandom
from methods.harness.trainer import TrainConfig
from methods.noise import keyed_randint, keyed_randn
from methods.registry import method_class

ABLATION = ["method.loss=production", "method.conditional=true", "method.noise_dim=null", "method.gen_per_class=64",
            "method.pos_per_class=64", "method.unc_per_class=16", "method.alpha_exponent=3.0", "train.lr=2e-4",
            "train.beta2=0.95", "train.weight_decay=0.01", "train.grad_clip=2.0"]
SOTA = ["method.loss=production", "method.conditional=true", "method.noise_dim=null", "method.gen_per_class=64",
        "method.pos_per_class=64", "method.unc_per_class=32", "method.alpha_exponent=5.0", "train.lr=4e-4",
        "train.beta2=0.95", "train.grad_clip=2.0"]
# PAPER.md Table 8: steps, effective (global) batch N_c x N_neg, and the release's accelerators (its README:
# 64 TPU v6e chips for the ablation, 128 for the final runs). Queue sizes are cut for memory only.
RECIPES = {
    "ablation_b2": {"overrides": ["model=drift_b2", "encoder=latent_256", *ABLATION], "steps": 30_000,
                    "global_batch": 4096, "release_accelerators": 64},
    "b2_latent": {"overrides": ["model=drift_b2", "encoder=latent_640", *SOTA], "steps": 200_000,
                  "global_batch": 8192, "release_accelerators": 128},
    "b16_pixel": {"overrides": ["model=drift_b16", "encoder=pixel_640", *SOTA, "method.class_queue=8",
                                "method.global_queue=256"], "steps": 100_000, "global_batch": 8192,
                  "release_accelerators": 128},
    # Not a paper recipe: every part of the step at CPU size (tests, DEVICE=cpu SMALL=1 checks).
    "tiny": {"overrides": ["model=dit_tiny", "encoder=digits_tiny", "method.loss=production",
                           "method.conditional=true", "method.noise_dim=null", "method.gen_per_class=8",
                           "method.pos_per_class=8", "method.unc_per_class=4"],
             "steps": 1000, "global_batch": 64, "release_accelerators": None},
}



@dataclass
class Setup:
    name: str                  # recipe name or the model's
    method_name: str
    method: object
    net: torch.nn.Module
    data: "SyntheticSource"
    train: TrainConfig
    images_per_step: int       # generated (drifting) or trained (baselines) images per process and step
    recipe: dict


class SyntheticSource:
    """Keyed normal images and uniform labels of ``spec``'s shape (a harness ``BatchSource``)."""

    def __init__(self, spec: DataSpec):
        self.spec = spec

    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch:
        rows = range(rank * local_batch, (rank + 1) * local_batch)
        x = keyed_randn((seed, step, 0xDA7A), rows, self.spec.shape, device).clamp_(-1, 1)
        y = keyed_randint((seed, step, 0x1ABE1), rows, self.spec.num_classes, (), device)
        return Batch(x=x, y=y, step=step, random=StepRandom(seed, step, rank, world, local_batch, device))


def _random_encoder(plain: dict, spec: DataSpec, folder: Path) -> str:
    """A randomly initialised MAE ResNet of the config's ``encoder`` group, saved where drifting loads it."""
    from methods.drifting.encoder import ResNetConfig
    from methods.drifting.mae import MAEResNet, save_encoder
    enc = plain["encoder"]
    cfg = ResNetConfig(width=enc["width"], layers=list(enc["layers"]), input_patch=enc["input_patch"],
                       every_k_block=enc["every_k_block"])
    path = folder / f"random-{enc['name']}.pt"
    save_encoder(path, MAEResNet(spec.shape[0], spec.num_classes, cfg), spec, {"random_init": True})
    return str(path)


def build(overrides: list[str], recipe: str | None, batch: int, device: torch.device,
          workdir: Path | None = None, with_encoder: bool = True) -> Setup:
    """The method, network and synthetic data of ``recipe`` + ``overrides`` on ``device``, training on
    ``batch`` images per step (drifting: generated, N_c = batch / N_neg classes). ``with_encoder=False``:
    no feature encoder (sampling needs only the generator)."""
    if recipe is not None and recipe not in RECIPES:
        raise ConfigError(f"unknown recipe '{recipe}'; choose one of: {', '.join(RECIPES)}")
    info = RECIPES.get(recipe, {"overrides": [], "steps": None, "global_batch": None, "release_accelerators": None})
    method_name = next((o.split("=", 1)[1] for o in overrides if o.startswith("method=")), "drifting")
    mine = {o.split("=", 1)[0] for o in overrides}
    base = [o for o in info["overrides"] if o.split("=", 1)[0] not in mine
            and (method_name == "drifting" or not o.startswith("method."))]
    plain = plain_config(compose_config([*base, *overrides]))
    model = plain["model"]
    shape, classes = tuple(model.get("nominal_shape") or ()), int(model.get("nominal_classes") or 0)
    if not shape or not classes:
        raise ConfigError(f"model '{model['name']}' has no nominal_shape/nominal_classes to build synthetic data")
    spec = DataSpec("synthetic", shape, classes, "images", (-1.0, 1.0))
    m_cls = _build("method", method_class, plain["method"]["name"])
    if method_name == "drifting":
        per = int(plain["method"]["gen_per_class"])
        if batch % per:
            raise ConfigError(f"--batch {batch} must be a multiple of method.gen_per_class={per} (N_c x N_neg)")
        plain["method"]["classes_per_step"] = batch // per
        if with_encoder:
            folder = Path(workdir or tempfile.mkdtemp(prefix="driftbench-perf-"))
            plain["method"]["encoder_path"] = _random_encoder(plain, spec, folder)
        else:
            plain["method"]["encoder_path"], plain["method"]["raw_loss"] = None, True
    else:
        plain["method"]["conditional"] = True               # matched: class-conditional, CFG label dropout
    method = _build("method", m_cls, typed("method", m_cls.Config, plain["method"]))
    if hasattr(method, "configure_backbone"):
        method.configure_backbone(model)
    if hasattr(method, "check_data"):
        _build("method", method.check_data, spec)
    train = typed("train", TrainConfig, {**plain["train"], "batch_size": batch, "progress": False,
                                         "log_every": 10 ** 9, "ckpt_every_steps": 10 ** 9, "ema": [0.999]})
    torch.manual_seed(0)
    with torch.device(device):
        backbone = _build("model", build_backbone, model, method.backbone_io(spec))
    net = method.build(backbone, spec)
    return Setup(recipe or model["name"], method_name, method, net, SyntheticSource(spec), train, batch, info)
