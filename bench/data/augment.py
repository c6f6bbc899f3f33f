"""The release's augmentation of real images, with randomness keyed by (seed, global sample index).

The drifting release (``torch/dataset/dataset.py``, ``use_aug``) feeds the pixel generator's positives and
unconditional negatives, and MAE pre-training, with torchvision's ``RandomResizedCrop(size, scale=(0.2,
1.0), interpolation=BICUBIC)`` of the decoded image followed by ``RandomHorizontalFlip()``; without
augmentation it takes the ADM centre crop and still flips (PAPER.md 2.2 and the Table 8 notes).

Here the crop box comes from torchvision's own ``RandomResizedCrop.get_params`` and the flip from one
uniform draw, both inside a torch RNG forked and seeded by ``mix_seed(seed, STREAM, k)`` for global
sample k: the same sample gets the same crop whichever worker, rank or resumed run loads it, and nothing
leaks into the worker's global RNG.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms import functional as F

from methods.noise import mix_seed

STREAM = 0xA06       # the augmentation's key, apart from every other keyed draw


@dataclass(frozen=True)
class KeyedAugment:
    """``augment(image, seed, index) -> image``: RandomResizedCrop to ``size`` (``crop=True``) and a
    horizontal flip with probability ``flip`` (PIL images or ``[C, H, W]`` tensors)."""

    size: int
    crop: bool = True
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5

    def __call__(self, image, seed: int, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(seed, STREAM, index))
            if self.crop:
                top, left, h, w = RandomResizedCrop.get_params(image, list(self.scale), list(self.ratio))
                image = F.resized_crop(image, top, left, h, w, [self.size, self.size],
                                       InterpolationMode.BICUBIC, antialias=True)
            if float(torch.rand(())) < self.flip:
                image = F.hflip(image)
        return image
