"""ImageNet as an ImageFolder root: the layout check, the class index, the ADM centre crop.

- Layout: ``<root>/<split>/<wnid>/*.JPEG`` (``train``, ``val``), ``root`` = ``data.root`` or
  ``$DRIFTBENCH_IMAGENET``. Labels are the positions of the class folders in sorted order, which for the
  1,000 ImageNet synsets is the standard class index (torchvision's ``ImageFolder``, ADM, DiT). A train
  split whose class count differs from ``data.num_classes`` is refused (tests use a few classes).
- ``center_crop_arr`` is ADM's crop (guided-diffusion ``image_datasets.py``, kept by DiT ``train.py`` and
  by the drifting release): halve with BOX while the short side is at least twice the target, then
  BICUBIC to the target short side, then crop the centre.
- Every problem with the root is a ``FileNotFoundError`` or ``ValueError`` of one line naming
  ``data.root`` and the expected layout (``bench.config._build`` turns it into a ``ConfigError``).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

ENV = "DRIFTBENCH_IMAGENET"
RESOLUTIONS = (64, 128, 256)          # the paper's 256; ADM/DiT's 64 and 128
LAYOUT = "<root>/{split}/<wnid>/*.JPEG"


def layout_hint(split: str = "train") -> str:
    return f"expected an ImageFolder root laid out as {LAYOUT.format(split=split)}"


def imagenet_root(root: str | None) -> Path:
    """``data.root``, else ``$DRIFTBENCH_IMAGENET``; one line when neither names a folder."""
    value = root or os.environ.get(ENV)
    if not value:
        raise FileNotFoundError(f"data.root is not set and ${ENV} is empty: set data.root=PATH (or export "
                                f"{ENV}=PATH), {layout_hint()}")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data.root={value}: no such folder; set data.root=PATH (or ${ENV}), "
                                f"{layout_hint()}")
    return path


def check_resolution(resolution: int, any_resolution: bool, multiple: int = 1) -> None:
    if any_resolution:
        if resolution < multiple or resolution % multiple:
            raise ValueError(f"data.resolution={resolution} must be a positive multiple of {multiple}")
    elif resolution not in RESOLUTIONS:
        raise ValueError(f"data.resolution={resolution}: choose one of {', '.join(map(str, RESOLUTIONS))} "
                         f"(data.any_resolution=true allows other sizes, for tests)")


@dataclass(frozen=True)
class Folder:
    """One split: image paths relative to the split folder, their labels, the sorted class names."""

    root: Path
    split: str
    files: np.ndarray                  # bytes [N]: one array, not 1.28M Python strings that every
    labels: np.ndarray                 # int64 [N]   DataLoader worker would copy by touching refcounts
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        return self.root / self.split / self.files[i].decode()

    def digest(self) -> str:
        """SHA-256 of the file list and labels: names which images a cache or reference was made of."""
        h = hashlib.sha256()
        for f, y in zip(self.files.tolist(), self.labels.tolist()):
            h.update(f + f"\t{y}\n".encode())
        return h.hexdigest()


@lru_cache(maxsize=8)
def scan(root: str, split: str, num_classes: int | None) -> Folder:
    """The images of ``<root>/<split>`` (scanned once per process), checked against the layout."""
    folder = Path(root) / split
    where = f"data.root={root}"
    if not folder.is_dir():
        raise FileNotFoundError(f"{where} has no {split}/ folder; {layout_hint(split)}")
    try:
        classes, index = find_classes(str(folder))
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: {split}/ holds no class folders; {layout_hint(split)}") from None
    if num_classes is not None and len(classes) != num_classes:
        raise ValueError(f"{where}: {split}/ holds {len(classes)} class folders but data.num_classes={num_classes}; "
                         f"point data.root at the full split or set data.num_classes={len(classes)}")
    items = make_dataset(str(folder), index, extensions=IMG_EXTENSIONS, allow_empty=True)
    files = [os.path.relpath(p, folder) for p, _ in items]
    empty = sorted(set(classes) - {Path(f).parts[0] for f in files})
    if empty:
        raise FileNotFoundError(f"{where}: no images in {len(empty)} class folder(s) of {split}/ "
                                f"({', '.join(empty[:3])}{', ...' if len(empty) > 3 else ''}); {layout_hint(split)}")
    labels = np.fromiter((y for _, y in items), dtype=np.int64, count=len(items))
    return Folder(Path(root), split, np.array([f.encode() for f in files], dtype=np.bytes_), labels, tuple(classes))


def center_crop_arr(image: Image.Image, size: int) -> np.ndarray:
    """ADM's centre crop to ``size`` x ``size`` (guided-diffusion ``image_datasets.center_crop_arr``):
    BOX halving while the short side is >= 2 * size, BICUBIC to short side ``size``, centre crop.
    Returns a uint8 ``[size, size, 3]`` array."""
    while min(*image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(*image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top:top + size, left:left + size]


def load_rgb(path: Path) -> Image.Image:
    """Decode one image file as RGB (PIL: faster than torchvision.io on CPU here, FINDINGS.md)."""
    with Image.open(path) as im:
        return im.convert("RGB")
