"""``python -m bench.run task=pretrain_encoder data=NAME [encoder=PRESET]``: MAE pre-training of the frozen
feature encoder of feature-space drifting (PAPER.md 2.2; ``methods/drifting/{encoder,mae}.py``).

The ``encoder`` config group holds the architecture, the MAE recipe and its own training budget
(``encoder.train``, the same schema as ``train``), like the release's ``configs/mae/*.yaml``. Training runs
in the shared harness (``methods/harness/trainer.py``: exact resume, EMA, checkpoints in
``<results_dir>/runs/pretrain-<encoder>-<data>-s<seed>``); at the end the chosen weights
(``encoder.export``) are written with their architecture and provenance to
``<results_dir>/encoders/<encoder>-<data>-s<seed>[-<tag>].pt`` plus a ``.json`` sidecar holding the SHA-256,
the config, the training summary and the masked-reconstruction loss on the data's reference set. Drifting
configs point at that file (``method.encoder_path``) and record its hash.

Latent MAE (``encoder.vae`` set: ``latent_256``, ``latent_640``): the data are pixel images
(``data=imagenet_pixel``, augmented by default as the release's MAE configs) encoded by that SD-VAE on
the training device (``bench/data/vae_encoded.py``), so the crops are augmented before encoding as in the
release; the exported encoder takes latents ``[4, R/8, R/8]`` and records the VAE's id and hash.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bench.config import TopConfig, _build, typed
from bench.errors import ConfigError
from bench.data import dataset_entry
from bench.data.vae_encoded import VAEEncodedSource
from methods.base import StepRandom
from methods.drifting.encoder import ResNetConfig
from methods.drifting.mae import MAEPretraining, MAEResNet, mae_losses, save_encoder
from methods.harness.atomic import write_file_atomic
from methods.harness.dist import barrier, env_rank_world, init_distributed, select_device
from methods.harness.trainer import TrainConfig, Trainer

EVAL_SEED = 0xE7A1


@dataclass
class EncoderConfig:
    name: str = "digits_tiny"
    width: int = 8
    layers: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    input_patch: int = 1
    every_k_block: int = 2
    gn_min_channels: int = 1           # 1: the release's GroupNorm rule (see methods/drifting/encoder.py)
    mask_ratio: float = 0.5
    mask_patch: int = 2
    cls_ft_steps: int = 0
    cls_warmup: int = 1000
    cls_lambda: float = 0.1
    export: str = "ema_0.999"
    eval_samples: int = 1024
    vae: str | None = None             # latent MAE: the SD-VAE (hub id or folder) that encodes the pixel data
    posterior: str = "sample"          # latent MAE: posterior sample (release) or mean
    train: TrainConfig = field(default_factory=TrainConfig)

    def arch(self) -> ResNetConfig:
        return ResNetConfig(width=self.width, layers=list(self.layers), input_patch=self.input_patch,
                            gn_min_channels=self.gn_min_channels,
                            every_k_block=self.every_k_block)


@dataclass
class PretrainSpec:
    task: str
    config: dict
    run_id: str
    top: TopConfig
    encoder: EncoderConfig
    data: object
    method: MAEPretraining
    out_path: Path


def encoder_file(results_dir: str, encoder: str, data: str, seed: int, tag: str | None) -> Path:
    return Path(results_dir) / "encoders" / f"{encoder}-{data}-s{seed}{'-' + tag if tag else ''}.pt"


def prepare(plain: dict, top: TopConfig) -> PretrainSpec:
    """Validate a ``task=pretrain_encoder`` config (the method/model/train/eval sections are not used)."""
    enc = typed("encoder", EncoderConfig, plain["encoder"])
    d_entry = _build("data", dataset_entry, plain["data"]["name"])
    data = _build("data", d_entry.build, typed("data", d_entry.config, plain["data"]))
    if data.spec.kind != "images" or len(data.spec.shape) != 3:
        raise ConfigError(f"task=pretrain_encoder needs image data; '{data.spec.name}' holds {data.spec.kind}")
    vae = None
    if enc.vae is not None:
        if data.spec.decoded_shape is not None:
            raise ConfigError(f"encoder={enc.name} encodes pixel crops itself (encoder.vae): use data=imagenet_pixel, "
                              f"not the cached latents of '{data.spec.name}'")
        from bench.data.vae import load_vae
        vae = _build("encoder.vae", load_vae, enc.vae)
        data = _build("encoder", VAEEncodedSource, data, vae, enc.posterior)
    _build("encoder", enc.arch().validate)
    _, world, local_rank = env_rank_world()
    _build("device", select_device, top.device, local_rank)
    _build("encoder.train", enc.train.validate, world)
    names = ["raw"] + [f"ema_{d:g}" for d in enc.train.ema]
    if enc.export not in names:
        raise ConfigError(f"encoder.export: '{enc.export}' is not kept by encoder.train.ema; choose from: {', '.join(names)}")
    if enc.eval_samples < 1:
        raise ConfigError(f"encoder.eval_samples must be >= 1, got {enc.eval_samples}")
    method = _build("encoder", MAEPretraining, enc.arch(), enc.mask_ratio, enc.mask_patch, enc.train.steps,
                    enc.cls_ft_steps, enc.cls_warmup, enc.cls_lambda)
    if enc.cls_ft_steps and data.spec.num_classes < 2:
        raise ConfigError(f"encoder.cls_ft_steps > 0 needs labelled data; '{data.spec.name}' has no classes")
    config = {"task": top.task, "seed": top.seed, "tag": top.tag, "encoder": plain["encoder"], "data": plain["data"]}
    if vae is not None:
        config["vae"] = {"ref": vae.ref, "sha256": vae.sha256}
    run_id = f"pretrain-{enc.name}-{data.spec.name}-s{top.seed}{'-' + top.tag if top.tag else ''}"
    return PretrainSpec(top.task, config, run_id, top, enc, data, method,
                        encoder_file(top.results_dir, enc.name, data.spec.name, top.seed, top.tag))


@torch.no_grad()
def masked_recon(model: MAEResNet, data, spec: PretrainSpec, device) -> dict[str, float]:
    """Masked-reconstruction loss (and accuracy of the class head) on the reference set, fixed masks."""
    x, y = data.reference(spec.encoder.eval_samples)
    x, y = x[:spec.encoder.eval_samples].to(device), y[:spec.encoder.eval_samples].to(device)
    rnd = StepRandom(EVAL_SEED, 0, 0, 1, len(x), device)
    ip = spec.encoder.input_patch
    mask = spec.method.mask(rnd, x.shape[-2] // ip, x.shape[-1] // ip)
    rec, _, acc = mae_losses(model.eval(), x, y, mask)
    return {"recon_masked": float(rec.mean()), "cls_acc": float(acc.mean()), "n": len(x)}


def execute(spec: PretrainSpec) -> Path:
    results = Path(spec.top.results_dir)
    run_dir = results / "runs" / spec.run_id
    stored = run_dir / "config.json"
    if stored.exists() and json.loads(stored.read_text()) != spec.config:
        raise ConfigError(f"'{spec.run_id}' exists with another config ({stored}); add tag=NAME or remove {run_dir}")
    if spec.out_path.exists() and spec.out_path.with_suffix(".json").exists():
        print(f"{spec.run_id}: already complete. Encoder: {spec.out_path}")
        return spec.out_path
    env = init_distributed(spec.top.device)
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(spec.config, indent=1)          # atomic: the other ranks may be reading the old one
        write_file_atomic(stored, lambda f: f.write(text), mode="w")
    torch.manual_seed(spec.top.seed)
    shape = spec.data.spec
    model = MAEResNet(shape.shape[0], shape.num_classes, spec.encoder.arch())
    trainer = Trainer(spec.method, model, spec.data, spec.encoder.train, run_dir, spec.top.seed, env)
    summary = trainer.fit()
    barrier(env)
    if not env.is_main:
        return spec.out_path
    final = trainer.net if spec.encoder.export == "raw" else trainer.ema.model(spec.encoder.export)
    evaluation = masked_recon(final, spec.data, spec, env.device)
    meta = {"run_id": spec.run_id, "config": spec.config, "weights": spec.encoder.export,
            "train": asdict(summary), "eval": evaluation}
    digest = save_encoder(spec.out_path, final, shape, meta)
    spec.out_path.with_suffix(".json").write_text(json.dumps({"sha256": digest, **meta}, indent=1))
    print(f"{spec.run_id}: masked reconstruction {evaluation['recon_masked']:.4g} on {evaluation['n']} reference "
          f"images ({spec.encoder.export} weights)")
    print(f"Encoder: {spec.out_path} (sha256 {digest})")
    return spec.out_path
