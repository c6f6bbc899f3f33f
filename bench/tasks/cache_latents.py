"""``python -m bench.run task=cache_latents data=imagenet_latent data.root=PATH [cache.shard=i cache.shards=n]``:
encode ImageNet for the latent models (PAPER.md 4, "Latent tokenizer"; the release's cached latents).

Every image of ``<root>/<split>`` is centre-cropped to ``data.resolution`` (ADM, ``bench/data/imagefolder.py``);
the crop and its mirror go through the VAE (``bench/data/vae.py``) into one memory-mapped fp16 array
(``bench/data/latent_cache.py``). The work is cut into chunks of ``cache.chunk`` images: chunk c belongs to
share ``c % shares``, where the shares are ``cache.shards`` array jobs times the processes of each
(torchrun or SLURM ranks), so shards write disjoint rows of the same file. A rerun skips finished chunks;
a killed run redoes at most the chunk it was in; a cache of another build (VAE weights, resolution, crop,
posterior, file list, chunk size) is refused. With ``data.posterior=sample`` the noise of image i's crop
(or mirror) is keyed by (``cache.noise_seed``, i), so the cache does not depend on how it was split.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.config import TopConfig, _build, typed
from bench.data import latent_cache as lc
from bench.data.imagefolder import Folder, imagenet_root, scan
from bench.data.imagenet_latent import ImageNetLatentConfig, check_config
from bench.data.imagenet_pixel import CropDataset
from bench.data.loader import uint8_to_unit
from bench.data.vae import FACTOR, SCALE, VAE, load_vae
from bench.errors import ConfigError
from methods.harness.dist import env_rank_world, select_device
from methods.noise import keyed_randn

POSTERIOR_STREAM = 0x9057


@dataclass
class CacheConfig:
    shard: int = 0                 # this job's share of the chunks (array jobs: the task id)
    shards: int = 1                # number of jobs sharing the build
    chunk: int = 1024              # images per chunk: the unit of resume
    batch_size: int = 64           # images per VAE call (each encoded with its mirror)
    noise_seed: int = 0            # posterior=sample: keys the posterior noise
    max_chunks: int | None = None  # stop after this many chunks (time-limited jobs); null: all of this share


@dataclass
class CacheSpec:
    top: TopConfig
    data: ImageNetLatentConfig
    cache: CacheConfig
    images: Folder
    vae: VAE
    manifest: dict
    share: int
    shares: int
    device: torch.device


def prepare(plain: dict, top: TopConfig) -> CacheSpec:
    """Validate the data, the VAE, the shares and any existing cache (nothing is written)."""
    if plain["data"]["name"] != "imagenet_latent":
        raise ConfigError(f"task=cache_latents builds data=imagenet_latent, not data={plain['data']['name']}")
    cfg = typed("data", ImageNetLatentConfig, plain["data"])
    cache = typed("cache", CacheConfig, plain.get("cache", {}))
    _build("data", check_config, cfg)
    if not 0 <= cache.shard < cache.shards:
        raise ConfigError(f"cache.shard={cache.shard} must be in [0, cache.shards={cache.shards})")
    if cache.chunk < 1 or cache.batch_size < 1 or (cache.max_chunks is not None and cache.max_chunks < 1):
        raise ConfigError("cache.chunk, cache.batch_size and cache.max_chunks must be >= 1")
    rank, world, local_rank = env_rank_world()
    device = _build("device", select_device, top.device, local_rank)
    root = _build("data", imagenet_root, cfg.root)
    images = _build("data", scan, str(root), cfg.split, cfg.num_classes)
    vae = _build("data", load_vae, cfg.vae)
    r = cfg.resolution // FACTOR
    manifest = {
        "format": lc.FORMAT, "vae": cfg.vae, "vae_source": vae.source, "vae_sha256": vae.sha256,
        "resolution": cfg.resolution, "crop": "adm_center_crop_arr", "posterior": cfg.posterior, "scale": SCALE,
        "noise_seed": cache.noise_seed if cfg.posterior == "sample" else None, "source_root": str(root.resolve()),
        "split": cfg.split, "num_classes": cfg.num_classes, "count": len(images),
        "files_sha256": images.digest(), "chunk": cache.chunk, "shape": [len(images), 2, 4, r, r],
        "layout": "[image, (centre crop, mirror), channel, row, column], fp16",
    }
    stored = _build("data", lc.read_manifest, Path(cfg.cache))
    diff = lc.identity_diff(stored, manifest) if stored else []
    if diff:
        raise ConfigError(f"data.cache={cfg.cache} holds another build ({'; '.join(diff)}); point data.cache at a "
                          f"new folder or remove this one")
    return CacheSpec(top, cfg, cache, images, vae, manifest, cache.shard * world + rank, cache.shards * world, device)


def encode_batch(spec: CacheSpec, x: torch.Tensor, index: range) -> torch.Tensor:
    """uint8 crops ``[B, 3, R, R]`` of images ``index`` -> fp16 ``[B, 2, 4, r, r]`` (crop, mirror)."""
    x = uint8_to_unit(x.to(spec.device))
    noise = None
    if spec.data.posterior == "sample":
        r = spec.data.resolution // FACTOR
        noise = torch.cat([keyed_randn((spec.cache.noise_seed, POSTERIOR_STREAM, f), index, (4, r, r), "cpu")
                           for f in (0, 1)]).to(spec.device)
    z = spec.vae.encode(torch.cat([x, x.flip(-1)]), noise)
    return torch.stack(z.chunk(2), dim=1).half().cpu()


def execute(spec: CacheSpec) -> Path:
    folder, m = Path(spec.data.cache), spec.manifest
    done = lc.done_chunks(folder) if (folder / lc.MANIFEST).exists() else set()
    total = lc.num_chunks(m)
    mine = [c for c in range(total) if c % spec.shares == spec.share]
    todo = [c for c in mine if c not in done][:spec.cache.max_chunks]
    if not todo:
        print(f"{folder}: the {len(mine)} chunks of share {spec.share}/{spec.shares} are built "
              f"({len(done)} of {total} in all); nothing to do")
        return folder
    _build("data", lc.create, folder, m, spec.images.labels)
    latents = lc.open_latents(folder, writable=True)
    mine_done = done & set(mine)
    batches = [range(b, min(b + spec.cache.batch_size, c_range.stop))
               for c_range in (lc.chunk_range(c, m["chunk"], m["count"]) for c in todo)
               for b in range(c_range.start, c_range.stop, spec.cache.batch_size)]
    loader = torch.utils.data.DataLoader(
        CropDataset(spec.images, spec.data.resolution, seed=0, augment=False, flip=False),
        batch_sampler=[[(i, 0) for i in b] for b in batches], num_workers=spec.data.num_workers,
        pin_memory=spec.device.type == "cuda", prefetch_factor=spec.data.prefetch if spec.data.num_workers else None)
    spec.vae.to(spec.device)
    print(f"{folder}: encoding {len(todo)} chunks of {m['chunk']} images (share {spec.share}/{spec.shares}, "
          f"{len(mine_done)} done before) with {m['vae']} on {spec.device}")
    t_start, vae_seconds, n_images = time.perf_counter(), 0.0, 0
    for (x, _), index in zip(loader, batches):
        t = time.perf_counter()
        latents[index.start:index.stop] = encode_batch(spec, x, index).numpy()
        vae_seconds += time.perf_counter() - t
        n_images += len(index)
        chunk = index.start // m["chunk"]
        if index.stop == lc.chunk_range(chunk, m["chunk"], m["count"]).stop:
            latents.flush()
            mine_done.add(chunk)
            lc.mark_done(folder, spec.share, spec.shares, mine_done)
    wall = time.perf_counter() - t_start
    print(f"{folder}: {n_images} images in {wall:.1f} s ({n_images / wall:.3g} images/s; VAE alone "
          f"{n_images / max(vae_seconds, 1e-9):.3g} images/s = {2 * n_images / max(vae_seconds, 1e-9):.3g} encodes/s); "
          f"{len(lc.done_chunks(folder))} of {total} chunks built")
    return folder
