"""The SD-VAE of the latent models: diffusers' ``AutoencoderKL`` (PAPER.md 4, "Latent tokenizer").

``data.vae`` is a hub id (``stabilityai/sd-vae-ft-mse``, the release's choice, or ``-ft-ema``), loaded from
the local Hugging Face cache first and from the hub where there is network, or a folder written by
``AutoencoderKL.save_pretrained``. Latents are ``SCALE * z`` (the release's ``dataset/vae.py``: 0.18215),
with ``z`` the posterior mean or a sample ``mean + std * noise`` (``data.posterior``; the release samples).
The record names the VAE by its id and the SHA-256 of its weights (``weights_sha256``), so that a cache
built with other weights is never mixed in.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

SCALE = 0.18215
FACTOR = 8                    # spatial downsampling of the SD-VAE: [3, R, R] -> [4, R/8, R/8]
POSTERIORS = ("mean", "sample")


def how_to_supply(ref: str) -> str:
    return (f"on a machine with network run python -c \"from diffusers import AutoencoderKL; "
            f"AutoencoderKL.from_pretrained('{ref}').save_pretrained('PATH')\", copy PATH here and set data.vae=PATH")


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of the state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class VAE:
    ref: str                  # data.vae as given
    source: str               # where the weights came from
    model: torch.nn.Module
    sha256: str

    def to(self, device) -> "VAE":
        self.model.to(device)
        return self

    @torch.no_grad()
    def encode(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """Images in [-1, 1] ``[B, 3, R, R]`` -> scaled latents ``[B, 4, R/8, R/8]`` (mean, or with ``noise``
        a posterior sample)."""
        dist = self.model.encode(x).latent_dist
        z = dist.mean if noise is None else dist.mean + dist.std * noise
        return z * SCALE

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Scaled latents -> images in [-1, 1] (the scale undone, the decoder's output clamped)."""
        return self.model.decode(latents / SCALE).sample.clamp_(-1.0, 1.0)


@lru_cache(maxsize=2)
def load_vae(ref: str) -> VAE:
    """The AutoencoderKL named by ``ref``; one-line ``FileNotFoundError`` saying how to supply it."""
    from diffusers import AutoencoderKL

    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"data.vae={ref}: the folder holds no config.json, so it is not an AutoencoderKL "
                                    f"saved with save_pretrained; {how_to_supply('stabilityai/sd-vae-ft-mse')}")
        model, source = AutoencoderKL.from_pretrained(path, low_cpu_mem_usage=False), f"folder {path.resolve()}"
    elif ref.count("/") == 1 and not ref.startswith(("/", ".", "~")):
        model = None
        for local_only in (True, False):
            if not local_only and os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
                break
            try:
                with warnings.catch_warnings():     # diffusers 0.42 passes huggingface_hub a retired argument
                    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
                    model = AutoencoderKL.from_pretrained(ref, local_files_only=local_only, low_cpu_mem_usage=False)
                break
            except (OSError, ValueError):
                continue
        if model is None:
            raise FileNotFoundError(f"data.vae={ref}: not in the local Hugging Face cache and the hub cannot be "
                                    f"reached; {how_to_supply(ref)}")
        source = f"hub {ref}"
    else:
        raise FileNotFoundError(f"data.vae={ref}: no such folder and not a hub id (owner/name); {how_to_supply(ref)}")
    model.eval().requires_grad_(False)
    if model.config.latent_channels != 4 or len(model.config.block_out_channels) != 4:
        raise ValueError(f"data.vae={ref}: expected the SD-VAE geometry (4 latent channels, factor {FACTOR}), got "
                         f"{model.config.latent_channels} channels and {len(model.config.block_out_channels)} blocks")
    return VAE(ref, source, model, weights_sha256(model))
