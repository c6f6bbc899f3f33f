"""Feeding our samples to torch-fidelity feature extractors.

torch-fidelity's extractors take uint8 RGB batches ``[B, 3, H, W]`` (and resize internally: Inception to
299 x 299 with its TF1-compatible bilinear resize). Samples in the data's value range are quantised to
uint8 the way image files would be, ``round((x - lo) / (hi - lo) * 255)``, or with ``quantize="floor"``
as guided-diffusion's sampler and the drifting release write their samples (``((x + 1) * 127.5).clamp(0,
255).to(uint8)``, a truncation; ``eval.quantize``); one channel (grey) is repeated to three; three
channels pass as they are (for stacked digits each channel is one digit). uint8 input (image files, ADM
reference batches) passes through unchanged.
"""
from __future__ import annotations

import torch
from torch import Tensor


QUANTIZE = ("round", "floor")


def to_uint8_rgb(x: Tensor, value_range: tuple[float, float] | None, quantize: str = "round") -> Tensor:
    if x.dim() != 4:
        raise ValueError(f"image metrics need image batches [B, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        if value_range is None:
            raise ValueError("image metrics need the data's value_range to quantise samples to uint8")
        lo, hi = value_range
        x = (x.float() - lo) * (255.0 / (hi - lo))
        x = (x.round_() if quantize == "round" else x.floor_()).clamp_(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"image metrics take 1 or 3 channels, got {x.shape[1]}")
    return x.contiguous()


class FidelityExtractor:
    """A registered torch-fidelity feature extractor applied to batches of our samples.

    ``layers`` maps our layer names ("features", "logits") to the extractor's feature names."""

    cache_reference = True

    def __init__(self, fidelity_name: str, layers: dict[str, str], weights_path: str, weights_hash: str,
                 info: dict, value_range, device: str = "cpu", name: str | None = None, quantize: str = "round"):
        from torch_fidelity.utils import create_feature_extractor

        self.name = name or fidelity_name
        self.weights_hash, self.info, self.value_range = weights_hash, info, value_range
        self.layers, self.quantize = layers, quantize
        self.device = torch.device(device)
        self.net = create_feature_extractor(fidelity_name, list(layers.values()), cuda=False,
                                            feature_extractor_weights_path=weights_path, verbose=False)
        self.net.to(self.device)

    @torch.no_grad()
    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        x = to_uint8_rgb(x, self.value_range, self.quantize).to(self.device)
        out = self.net.convert_features_tuple_to_dict(self.net(x))
        return {ours: out[theirs].float().cpu() for ours, theirs in self.layers.items()}
