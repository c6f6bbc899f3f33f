"""``data=imagenet_pixel``: ImageNet images from an ImageFolder root, ``[3, R, R]`` in [-1, 1] (PAPER.md 4-5).

- Training batches (``data.split``, default ``train``) come through a DataLoader (``bench/data/loader.py``):
  ``data.augment=true`` (the release's pixel configs) applies RandomResizedCrop(scale 0.2-1) + flip to
  the decoded image; ``false`` takes the ADM centre crop (``bench/data/imagefolder.py``) and flips, as the
  release's non-augmented path and DiT do. Both are keyed by (seed, global sample index)
  (``bench/data/augment.py``).
- ``reference(n)``: the first ``n`` images of a fixed permutation of ``data.reference_split`` (``val``),
  centre-cropped, unflipped; ``floor(n)``: the next ``n``. For FID-50K against the ADM statistics set
  ``eval.reference=VIRTUAL_imagenet256_labeled.npz`` instead (the paper's protocol, PROTOCOLS.md).
- Labels: sorted synset folders -> 0..999, the standard index; ``data.num_classes`` must match the class
  folders (a few classes for tests).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from bench.data.augment import KeyedAugment
from bench.data.imagefolder import Folder, center_crop_arr, check_resolution, imagenet_root, load_rgb, scan
from bench.data.loader import LoaderSource, uint8_to_unit
from bench.data.sampler import EpochSampler
from methods.base import DataSpec

REFERENCE_SEED = 0x5EF       # the fixed order in which reference (and floor) images are taken


@dataclass
class ImageNetPixelConfig:
    name: str = "imagenet_pixel"
    root: str | None = None            # ImageFolder root; null: $DRIFTBENCH_IMAGENET
    split: str = "train"               # training split (a sub-folder of root)
    reference_split: str = "val"       # metrics' reference set (and floor)
    resolution: int = 256              # 64, 128 or 256
    num_classes: int = 1000            # must equal the number of class folders
    augment: bool = True               # RandomResizedCrop(0.2, 1) + flip (release); false: centre crop + flip
    num_workers: int = 8               # DataLoader worker processes (0: load in the training process)
    prefetch: int = 4                  # batches each worker loads ahead
    any_resolution: bool = False       # tests only: allow any data.resolution

    def spec(self) -> DataSpec:
        """The spec from the config alone (no disk access: e.g. parameter counts without ImageNet)."""
        return DataSpec(name=self.name, shape=(3, self.resolution, self.resolution), num_classes=self.num_classes,
                        kind="images", value_range=(-1.0, 1.0))


class CropDataset(Dataset):
    """Items ``(index, k)`` -> ``(uint8 [3, R, R], label)``: keyed augmentation (``augment``), or the ADM
    centre crop with a keyed flip (``flip``), or the plain centre crop."""

    def __init__(self, folder: Folder, resolution: int, seed: int, augment: bool, flip: bool = True):
        self.folder, self.resolution, self.seed, self.augment = folder, resolution, seed, augment
        self.keyed = KeyedAugment(resolution, crop=augment, flip=0.5 if flip else 0.0)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, int]:
        i, k = item
        image = load_rgb(self.folder.path(i))
        if self.augment:
            x = torch.from_numpy(np.array(self.keyed(image, self.seed, k))).permute(2, 0, 1)
        else:
            x = self.keyed(torch.from_numpy(center_crop_arr(image, self.resolution).copy()).permute(2, 0, 1),
                           self.seed, k)
        return x.contiguous(), int(self.folder.labels[i])


def load_centre_crops(folder: Folder, resolution: int, indices: list[int], workers: int) -> tuple[Tensor, Tensor]:
    """Centre crops (no flip) of ``indices`` as float [-1, 1] ``[n, 3, R, R]`` and labels, decoded by workers."""
    data = CropDataset(folder, resolution, seed=0, augment=False, flip=False)
    loader = DataLoader(data, batch_size=64, sampler=[(i, 0) for i in indices], num_workers=workers)
    xs, ys = zip(*loader)
    return uint8_to_unit(torch.cat(xs)), torch.cat(ys)


@lru_cache(maxsize=4)
def split_reference(root: str, split: str, resolution: int, num_classes: int, n: int, offset: int,
                    workers: int) -> tuple[Tensor, Tensor]:
    """Images ``offset .. offset + n`` of a fixed permutation of ``<root>/<split>`` (all when fewer)."""
    try:
        folder = scan(root, split, num_classes)
    except (FileNotFoundError, ValueError) as e:
        raise FileNotFoundError(f"{e.args[0]} (the reference images; or set eval.reference=PATH.npz, an ADM "
                                f"reference batch)") from None
    total = len(folder)
    if n < 1:
        raise ValueError(f"a reference set needs n >= 1 images, got {n}")
    if offset >= total:
        raise ValueError(f"data.root={root}: {split}/ holds {total} images, too few for a second, disjoint "
                         f"sample of {n} (the floor)")
    order = EpochSampler(total, REFERENCE_SEED).indices(0, total)[offset:offset + n].tolist()
    return load_centre_crops(folder, resolution, order, workers)


def build_imagenet_pixel(cfg: ImageNetPixelConfig) -> LoaderSource:
    check_resolution(cfg.resolution, cfg.any_resolution)
    root = str(imagenet_root(cfg.root))
    folder = scan(root, cfg.split, cfg.num_classes)
    spec = cfg.spec()
    ref = (root, cfg.reference_split, cfg.resolution, cfg.num_classes)
    source = LoaderSource(spec, len(folder), lambda seed: CropDataset(folder, cfg.resolution, seed, cfg.augment),
                          cfg.num_workers, cfg.prefetch,
                          reference_fn=lambda n: split_reference(*ref, n, 0, cfg.num_workers),
                          floor_fn=lambda n, draw: split_reference(*ref, n, n, cfg.num_workers))
    source.identity = {"files_sha256": folder.digest(), "count": len(folder), "split": cfg.split,
                       "resolution": cfg.resolution, "augment": cfg.augment}     # named in run records
    return source
