"""``data=imagenet_latent``: SD-VAE latents of ImageNet ``[4, R/8, R/8]``, read from the cache that
``task=cache_latents`` builds (``bench/data/latent_cache.py``; PAPER.md 4 "Latent tokenizer").

- Training batches read the memory-mapped cache through a DataLoader (``bench/data/loader.py``); each
  sample takes the latent of the centre crop or of its mirror, a choice keyed by (seed, global sample
  index), as the release's cached latents with random flip.
- The spec says the samples are latents (``DataSpec.decoded_shape = (3, R, R)``); ``decode(latents)`` maps
  them to images in [-1, 1] with the same VAE (hash checked against the cache), so that sampling decodes
  before the metrics (``bench.sampling.generate(decode=...)``, timed apart).
- ``reference(n)`` / ``floor(n)``: centre crops of ``data.reference_split`` of the ImageFolder root
  (``data.root``, else the root the cache was built from), as ``data=imagenet_pixel``; FID-50K uses
  ``eval.reference=`` the ADM batch.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from bench.data import latent_cache as lc
from bench.data.imagefolder import ENV, check_resolution
from bench.data.imagenet_pixel import split_reference
from bench.data.loader import LoaderSource
from bench.data.vae import FACTOR, POSTERIORS, load_vae
from methods.base import DataSpec
from methods.noise import keyed_randint

FLIP_STREAM = 0xF11B


@dataclass
class ImageNetLatentConfig:
    name: str = "imagenet_latent"
    root: str | None = None            # ImageFolder root the cache is built from; null: $DRIFTBENCH_IMAGENET
    split: str = "train"
    reference_split: str = "val"
    resolution: int = 256              # of the images; latents are R/8
    num_classes: int = 1000
    cache: str | None = None           # cache folder (bench/conf/data/imagenet_latent.yaml sets the default)
    vae: str = "stabilityai/sd-vae-ft-mse"
    posterior: str = "sample"          # sample (release) | mean
    num_workers: int = 2
    prefetch: int = 4
    decode_batch: int = 32             # latents per VAE decoder call at evaluation
    any_resolution: bool = False       # tests only: any multiple of 8

    def spec(self) -> DataSpec:
        """The spec from the config alone (no disk access: e.g. parameter counts without a cache)."""
        r = self.resolution // FACTOR
        return DataSpec(name=self.name, shape=(4, r, r), num_classes=self.num_classes, kind="images",
                        value_range=(-1.0, 1.0), decoded_shape=(3, self.resolution, self.resolution))


BUILD_KEYS = ("root", "split", "resolution", "num_classes", "cache", "vae", "posterior", "any_resolution")


def cache_command(cfg: ImageNetLatentConfig) -> str:
    """The command that builds (or finishes) this config's cache."""
    defaults = {f.name: f.default for f in fields(ImageNetLatentConfig)}
    args = [f"data.{k}={shlex.quote(str(getattr(cfg, k)))}" for k in BUILD_KEYS
            if k == "cache" or getattr(cfg, k) != defaults[k]]
    if cfg.root is None and not os.environ.get(ENV):
        args.insert(0, "data.root=PATH")
    return " ".join(["python -m bench.run task=cache_latents data=imagenet_latent", *args])


def check_config(cfg: ImageNetLatentConfig) -> None:
    check_resolution(cfg.resolution, cfg.any_resolution, multiple=FACTOR)
    if cfg.posterior not in POSTERIORS:
        raise ValueError(f"data.posterior={cfg.posterior}: choose one of {', '.join(POSTERIORS)}")
    if not cfg.cache:
        raise ValueError("data.cache is not set: name the latent cache folder (data.cache=PATH)")
    if cfg.decode_batch < 1:
        raise ValueError(f"data.decode_batch must be >= 1, got {cfg.decode_batch}")


def wanted(cfg: ImageNetLatentConfig) -> dict:
    """The manifest entries a config fixes (the VAE is compared by its weights' hash, the images by their list)."""
    return {"resolution": cfg.resolution, "posterior": cfg.posterior, "split": cfg.split,
            "num_classes": cfg.num_classes}


class LatentDataset(Dataset):
    """Items ``(index, k)`` -> ``(fp16 [4, r, r], label)`` from the memory-mapped cache; the mirror is
    taken where the keyed bit of (seed, k) is 1. ``__getitems__`` reads a whole batch in one indexing."""

    def __init__(self, folder: Path, labels: np.ndarray, seed: int):
        self.folder, self.labels, self.seed = folder, labels, seed
        self._latents: np.memmap | None = None      # opened in the process that reads (each worker)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, items: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        if self._latents is None:
            self._latents = lc.open_latents(self.folder)
        idx = np.fromiter((i for i, _ in items), dtype=np.int64, count=len(items))
        flips = keyed_randint((self.seed, FLIP_STREAM), torch.tensor([k for _, k in items]), 2, (), "cpu").numpy()
        return torch.from_numpy(self._latents[idx, flips]), torch.from_numpy(self.labels[idx])


def collated(batch):
    """``LatentDataset.__getitems__`` already returns the batch."""
    return batch


def half_to_float(x: Tensor) -> Tensor:
    return x.float()


class LatentSource(LoaderSource):
    def __init__(self, cfg: ImageNetLatentConfig, manifest: dict, labels: np.ndarray, vae, ref_root: str | None):
        spec, folder = cfg.spec(), Path(cfg.cache)
        ref = (cfg.reference_split, cfg.resolution, cfg.num_classes)

        def reference(n: int, offset: int = 0):
            if ref_root is None:
                raise FileNotFoundError(f"data.root is not set and ${ENV} is empty: the reference images come from "
                                        f"<root>/{cfg.reference_split}/<wnid>/*.JPEG, or set eval.reference=PATH.npz")
            return split_reference(ref_root, *ref, n, offset, cfg.num_workers)

        super().__init__(spec, len(labels), lambda seed: LatentDataset(folder, labels, seed), cfg.num_workers,
                         cfg.prefetch, reference_fn=reference, floor_fn=lambda n, draw: reference(n, n),
                         to_model=half_to_float, collate=collated)
        self.manifest, self.vae, self.decode_batch = manifest, vae, cfg.decode_batch

    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> images in [-1, 1] ``[B, 3, R, R]`` with the cache's VAE, ``decode_batch`` at a time."""
        self.vae.to(latents.device)
        return torch.cat([self.vae.decode(z.float()) for z in latents.split(self.decode_batch)])


def build_imagenet_latent(cfg: ImageNetLatentConfig) -> LatentSource:
    check_config(cfg)
    folder = Path(cfg.cache)
    manifest = lc.read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"data.cache={cfg.cache}: no latent cache there; build it with: {cache_command(cfg)}")
    diff = [f"{k}: cache {manifest.get(k)!r}, config {v!r}" for k, v in wanted(cfg).items() if manifest.get(k) != v]
    if diff:
        raise ValueError(f"data.cache={cfg.cache} was built with other settings ({'; '.join(diff)}); point "
                         f"data.cache at a cache of these settings or build one with: {cache_command(cfg)}")
    done, total = len(lc.done_chunks(folder)), lc.num_chunks(manifest)
    if done < total:
        raise FileNotFoundError(f"data.cache={cfg.cache}: {done} of {total} chunks are built; finish it with: "
                                f"{cache_command(cfg)}")
    vae = load_vae(cfg.vae)
    if vae.sha256 != manifest["vae_sha256"]:
        raise ValueError(f"data.vae={cfg.vae}: its weights (sha256 {vae.sha256[:12]}...) are not the ones the cache "
                         f"was built with ({manifest['vae_sha256'][:12]}...); use that VAE or rebuild the cache")
    labels = np.load(folder / lc.LABELS)
    ref_root = cfg.root or os.environ.get(ENV) or manifest.get("source_root")
    return LatentSource(cfg, manifest, labels, vae, ref_root)
