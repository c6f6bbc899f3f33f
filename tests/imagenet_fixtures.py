"""Tiny ImageNet-layout folders of real JPEG files, a tiny random AutoencoderKL, random Inception weights.

Each class has its own colour, so a crop or flip that reads the wrong pixels shows in the numbers; every
image has a left-right colour ramp (a flip changes it) and its own size (crops differ)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361")    # the first four ImageNet synsets
COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 210], [200, 190, 40]])


def class_image(label: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    ramp = np.linspace(-60, 60, width)[None, :, None]
    noise = rng.integers(-12, 13, (height, width, 3))
    return np.clip(COLOURS[label][None, None] + ramp + noise, 0, 255).astype(np.uint8)


def write_imagefolder(root: Path, classes: int = 3, per_class: int = 6, val_per_class: int = 4,
                      seed: int = 0) -> Path:
    """``root/{train,val}/<wnid>/<wnid>_<i>.JPEG``; images 36-60 px wide, 30-44 px high."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / WNIDS[c]
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = int(rng.integers(36, 61)), int(rng.integers(30, 45))
                Image.fromarray(class_image(c, w, h, rng)).save(folder / f"{WNIDS[c]}_{i}.JPEG", quality=95)
    return root


def tiny_vae(path: Path, seed: int = 0) -> Path:
    """A randomly initialised AutoencoderKL with the SD-VAE's geometry (4 latent channels, factor 8),
    a few channels wide, saved with ``save_pretrained``."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, norm_num_groups=4, sample_size=32)
    vae.save_pretrained(path)
    return path


def random_inception(path: Path, seed: int = 0) -> Path:
    """A state dict of torch-fidelity's Inception (the FID network) with random weights and batch-norm
    statistics set from one batch of random images (``bench.perf.fid_point.random_inception``)."""
    from bench.perf.fid_point import random_inception as make

    return make(path, seed)
