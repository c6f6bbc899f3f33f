"""Input-pipeline speed of the ImageNet sources: can the loader keep a GPU fed?

``python -m bench.perf.loader [--root PATH] [--resolution 64] [--workers 0 1 2] [--vae sd|PATH|HUB_ID]``

- JPEG decoding: PIL (``Image.open().convert("RGB")``, what the sources use) against
  ``torchvision.io.decode_jpeg`` (then handed to PIL, whose resizes the ADM crop is defined by), ms per image.
- ``data=imagenet_pixel``: images/s through the real DataLoader (``bench/data/loader.py``) for each worker
  count, with and without the release's augmentation, and images/s per worker.
- ``task=cache_latents``: images/s of the whole builder and of the VAE alone (each image is encoded with
  its mirror: two VAE forwards); ``--vae sd`` (default) is the SD-VAE architecture (sd-vae-ft-mse's
  config, 83.7M parameters) with random weights, which runs exactly as fast as the real one.
- ``data=imagenet_latent``: images/s reading the memory-mapped cache, per worker count.

The pixel rows read ``--root`` or, without it, a synthetic ImageFolder of photo-sized JPEGs (500 x 375,
quality 90, about a typical ImageNet image) written to a temporary folder; the cache is built whole from
``--cache-images`` such synthetic images. The first batch (worker start-up) is not timed.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.config import compose_config
from bench.data import build_data
from bench.data.imagefolder import load_rgb, scan
from bench.tasks import execute, prepare

SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              layers_per_block=2, norm_num_groups=32, sample_size=256)   # stabilityai/sd-vae-ft-mse config.json


def write_photos(root: Path, classes: int, per_class: int, size=(500, 375)) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    for c in range(classes):
        (root / "train" / f"n{c:08d}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            f = rng.uniform(0.005, 0.05, 3)
            smooth = 127 + 100 * np.sin(xx[..., None] * f + yy[..., None] * f[::-1] + rng.uniform(0, 6, 3))
            image = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(root / "train" / f"n{c:08d}" / f"{i}.JPEG", quality=90)
    return root


def decode_ms(root: Path, n: int = 32, repeats: int = 3) -> dict[str, float]:
    """Best of ``repeats`` passes, ms per image: PIL, and torchvision.io handed to PIL for the ADM crop."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    def tv(p: Path) -> Image.Image:
        return Image.fromarray(decode_jpeg(read_file(str(p)), mode=ImageReadMode.RGB).permute(1, 2, 0).numpy())

    files = sorted((root / "train").rglob("*.JPEG"))[:n]
    out = {}
    for name, fn in (("pil", load_rgb), ("torchvision.io", tv)):
        fn(files[0])
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for p in files:
                fn(p)
            times.append(time.perf_counter() - t)
        out[name] = 1000 * min(times) / len(files)
    return out


def loader_rate(data, batch: int, steps: int) -> float:
    data.batch(0, 0, 0, 1, batch, "cpu")                    # worker start-up and first batch
    t = time.perf_counter()
    for s in range(1, steps + 1):
        data.batch(s, 0, 0, 1, batch, "cpu")
    rate = steps * batch / (time.perf_counter() - t)
    data.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", help="an ImageFolder root (default: synthetic photo-sized JPEGs)")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--vae", default="sd", help="sd (SD-VAE architecture, random weights), a folder or a hub id")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache-images", type=int, default=64, help="synthetic images encoded into the latent cache")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="driftbench-loader-"))
    root = Path(args.root) if args.root else write_photos(tmp / "imagenet", 4, 64)
    classes = len(scan(str(root), "train", None).classes)
    common = {"root": str(root), "num_classes": classes, "resolution": args.resolution,
              "any_resolution": args.resolution not in (64, 128, 256)}
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"root {root} ({classes} classes), resolution {args.resolution}, batch {args.batch}, torch threads "
          f"{torch.get_num_threads()}")
    print("decode ms/image: " + ", ".join(f"{k} {v:.2f}" for k, v in decode_ms(root).items()))
    for augment in (True, False):
        for w in args.workers:
            rate = loader_rate(build_data({"name": "imagenet_pixel", **common, "augment": augment, "num_workers": w}),
                               args.batch, args.steps)
            print(f"pixel augment={str(augment).lower():5} workers={w}: {rate:8.1f} images/s "
                  f"({rate / max(w, 1):.1f} per worker)")
    vae = args.vae
    if vae == "sd":
        from diffusers import AutoencoderKL

        vae = str(tmp / "sd_vae_random")
        AutoencoderKL(**SD_VAE).save_pretrained(vae)
    photos = write_photos(tmp / "small", 4, args.cache_images // 4)      # the cache is always built whole
    data = {**common, "root": str(photos), "num_classes": 4, "vae": vae, "cache": str(tmp / "cache"),
            "num_workers": max(args.workers)}
    spec = prepare(compose_config(["task=cache_latents", "data=imagenet_latent", f"device={args.device}",
                                   "cache.batch_size=16", *(f"data.{k}={v}" for k, v in data.items())]))
    print(f"cache builder: {spec.vae.source}, {sum(p.numel() for p in spec.vae.model.parameters()) / 1e6:.1f}M "
          f"parameters, {len(spec.images)} images, batch 16")
    execute(spec)
    for w in args.workers:
        latents = build_data({"name": "imagenet_latent", **data, "num_workers": w})
        rate = loader_rate(latents, args.batch * 8, args.steps)
        print(f"latent cache workers={w}: {rate:10.1f} images/s ({rate / max(w, 1):.1f} per worker)")

if __name__ == "__main__":
    main()
