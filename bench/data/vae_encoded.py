"""Images encoded by the SD-VAE on the fly: the input of latent-MAE pre-training (PAPER.md 2.2: "for latents,
images are augmented *before* VAE encoding"; the release's MAE configs ``use_latent: true``,
``use_cache: false``, ``use_aug: true``).

``VAEEncodedSource(pixels, vae, posterior)`` wraps a pixel source (``data=imagenet_pixel``, whose
``data.augment`` applies the release's RandomResizedCrop(0.2, 1) + flip) and hands the trainer each batch
as scaled latents ``[B, 4, R/8, R/8]``, encoded on the training device. ``posterior=sample`` draws the
posterior noise of sample i from the step's keyed stream (``batch.random``: the same for any world size;
the release reuses one fixed key, ``PRNGKey(0)``, every step); the reference set (masked-reconstruction
evaluation) uses the posterior mean.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from bench.data.vae import FACTOR, POSTERIORS, VAE
from methods.base import Batch


class VAEEncodedSource:
    def __init__(self, pixels, vae: VAE, posterior: str = "sample", batch_size: int = 64):
        c, h, w = pixels.spec.shape
        if c != 3 or h % FACTOR or w % FACTOR:
            raise ValueError(f"encoder.vae needs RGB images whose size is a multiple of {FACTOR}; data "
                             f"'{pixels.spec.name}' has shape {list(pixels.spec.shape)}")
        if posterior not in POSTERIORS:
            raise ValueError(f"encoder.posterior={posterior}: choose one of {', '.join(POSTERIORS)}")
        self.pixels, self.vae, self.posterior, self.batch_size = pixels, vae, posterior, batch_size
        self.spec = replace(pixels.spec, shape=(4, h // FACTOR, w // FACTOR), decoded_shape=(c, h, w))

    def _encode(self, x: Tensor, noise: Tensor | None) -> Tensor:
        self.vae.to(x.device)
        chunks = zip(x.split(self.batch_size), noise.split(self.batch_size) if noise is not None else
                     [None] * -(-len(x) // self.batch_size))
        return torch.cat([self.vae.encode(xi, ni) for xi, ni in chunks])

    def batch(self, step: int, seed: int, rank: int, world: int, local_batch: int, device) -> Batch:
        b = self.pixels.batch(step, seed, rank, world, local_batch, device)
        noise = b.random.randn(*self.spec.shape) if self.posterior == "sample" else None
        return replace(b, x=self._encode(b.x, noise))

    def reference(self, n: int) -> tuple[Tensor, Tensor]:
        x, y = self.pixels.reference(n)
        device = next(self.vae.model.parameters()).device
        return self._encode(x.to(device), None).cpu(), y

    def close(self) -> None:
        if hasattr(self.pixels, "close"):
            self.pixels.close()
