"""The MAE-style ResNet feature encoder of drifting (PAPER.md section 2.2; Deng et al. 2026, A.3, Table 3).

- Basic blocks (two 3x3 convs), GroupNorm instead of BatchNorm, a 1x1 conv + GN projection on the skip
  where the shape changes; ResNet-34 layout ``[3, 4, 6, 3]`` by default.
- A 3x3 stem without downsampling ("conv1"); stride-2 downsampling in the first block of stages 2-4;
  widths C, 2C, 4C, 8C. Pixel-MAE first patchifies the image into ``input_patch`` x ``input_patch`` patches
  (Table 8: "conv1 stride 8": 256x256x3 -> 32x32x192).
- Feature maps ([code], ``get_activations``): the stem output ``conv1``; each stage output followed by an
  extra GroupNorm ``layer{i}``; and the outputs of every ``every_k_block``-th block ``layer{i}_blk{k}``.
  For ``[3, 4, 6, 3]`` and k = 2 that is 12 maps.
- The MAE decoder (pre-training only) is a U-Net: a 3x3 conv block on layer4, then four up-blocks
  (bilinear upsampling to the skip's size, concatenation, GN, two 3x3 conv+GN+ReLU), then a 1x1 head.

GroupNorm as the release's ``_choose_gn_groups``: the largest group count <= 32 that divides the channels,
down to one channel per group at tiny widths, with Flax's epsilon 1e-6 (torch's default is 1e-5).
``gn_min_channels`` > 1 (the 8x8 digits preset only) keeps that many channels per group: with one channel
per group every GroupNorm output's per-channel spatial mean and std are the same constants for every
image, so those drifting keys carry nothing but rounding (the release's widths, >= 256, have >= 8).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ResNetConfig:
    width: int = 256                         # base width C (paper: 256 ablation, 640 final)
    layers: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    input_patch: int = 1                     # 8 for pixel-MAE; 1 for latents and small images
    every_k_block: int = 2                   # feature taps: every k-th block of each stage
    gn_min_channels: int = 1                 # channels per GroupNorm group at least (1: the release's rule)

    def validate(self) -> None:
        if self.width < 1 or len(self.layers) != 4 or min(self.layers) < 1:
            raise ValueError(f"encoder needs width >= 1 and four stages of >= 1 block, got width={self.width} "
                             f"layers={self.layers}")
        if self.input_patch < 1 or self.every_k_block < 1 or self.gn_min_channels < 1:
            raise ValueError(f"encoder.input_patch, encoder.every_k_block and encoder.gn_min_channels must be >= 1, "
                             f"got {self.input_patch}, {self.every_k_block} and {self.gn_min_channels}")


GN_EPS = 1e-6          # flax.linen.GroupNorm's default epsilon, as the release's encoder uses it
GN_MAX_GROUPS = 32


def gn_groups(channels: int, max_groups: int = GN_MAX_GROUPS, min_channels: int = 1) -> int:
    """The release's ``_choose_gn_groups``: the largest count <= ``max_groups`` that divides ``channels``
    (and leaves at least ``min_channels`` channels per group)."""
    g = max(1, min(max_groups, channels // min_channels))
    while g > 1 and channels % g:
        g -= 1
    return g


def gn(channels: int, min_channels: int = 1) -> nn.GroupNorm:
    return nn.GroupNorm(gn_groups(channels, min_channels=min_channels), channels, eps=GN_EPS)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, min_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.gn1 = gn(c_out, min_channels)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.gn2 = gn(c_out, min_channels)
        self.proj = None
        if stride != 1 or c_in != c_out:
            self.proj = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), gn(c_out, min_channels))

    def forward(self, x: Tensor) -> Tensor:
        y = self.gn2(self.conv2(F.relu(self.gn1(self.conv1(x)))))
        return F.relu(y + (x if self.proj is None else self.proj(x)))


def patchify(x: Tensor, p: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, C p p, H/p, W/p]`` (the release's ``b (h p) (w q) c -> b h w (p q c)``)."""
    if p == 1:
        return x
    b, c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(f"encoder.input_patch={p} must divide the image size {h}x{w}")
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(b, p * p * c, h // p, w // p)


def unpatchify(x: Tensor, p: int, c: int) -> Tensor:
    if p == 1:
        return x
    b, _, h, w = x.shape
    x = x.reshape(b, p, p, c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c, h * p, w * p)


class ResNetEncoder(nn.Module):
    """Multi-scale feature maps ``{name: [B, C_i, H_i, W_i]}`` of a (patchified) image."""

    def __init__(self, in_channels: int, cfg: ResNetConfig):
        super().__init__()
        cfg.validate()
        self.cfg, self.in_channels = cfg, in_channels
        c, k = cfg.width, cfg.gn_min_channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels * cfg.input_patch ** 2, c, 3, 1, 1, bias=False), gn(c, k),
                                  nn.ReLU())
        self.stages = nn.ModuleList()
        self.norms = nn.ModuleList()
        c_in = c
        for i, n in enumerate(cfg.layers):
            c_out = c * 2 ** i
            blocks = [BasicBlock(c_in, c_out, 2 if i > 0 else 1, k)] + [BasicBlock(c_out, c_out, 1, k)
                                                                         for _ in range(n - 1)]
            self.stages.append(nn.ModuleList(blocks))
            self.norms.append(gn(c_out, k))
            c_in = c_out

    def widths(self) -> list[int]:
        return [self.cfg.width * 2 ** i for i in range(4)]

    def forward(self, x: Tensor, taps: bool = True) -> dict[str, Tensor]:
        """Feature maps of images ``x``; ``taps``: also the every-k-th block outputs (drifting loss)."""
        return self.forward_patched(patchify(x, self.cfg.input_patch), taps)

    def forward_patched(self, xp: Tensor, taps: bool = False) -> dict[str, Tensor]:
        h = self.stem(xp)
        feats = {"conv1": h}
        for i, (blocks, norm) in enumerate(zip(self.stages, self.norms), start=1):
            for k, block in enumerate(blocks, start=1):
                h = block(h)
                if taps and k % self.cfg.every_k_block == 0:
                    feats[f"layer{i}_blk{k}"] = h
            h = norm(h)
            feats[f"layer{i}"] = h
        return feats


class ConvGNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, min_channels: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), gn(c_out, min_channels), nn.ReLU())


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_skip: int, c_out: int, min_channels: int = 1):
        super().__init__()
        self.norm = gn(c_in + c_skip, min_channels)
        self.proj = ConvGNReLU(c_in + c_skip, c_out, min_channels)
        self.refine = ConvGNReLU(c_out, c_out, min_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(self.proj(self.norm(torch.cat([x, skip], dim=1))))


class UNetDecoder(nn.Module):
    """Reconstructs the (patchified) input from the encoder's conv1 and layer1-4 maps."""

    def __init__(self, width: int, out_channels: int, min_channels: int = 1):
        super().__init__()
        c1, c2, c3, c4, k = width, 2 * width, 4 * width, 8 * width, min_channels
        self.bridge = ConvGNReLU(c4, c4, k)
        self.up43, self.up32 = UpBlock(c4, c3, c3, k), UpBlock(c3, c2, c2, k)
        self.up21, self.up10 = UpBlock(c2, c1, c1, k), UpBlock(c1, c1, c1, k)
        self.head = nn.Conv2d(c1, out_channels, 1)

    def forward(self, f: dict[str, Tensor]) -> Tensor:
        x = self.up43(self.bridge(f["layer4"]), f["layer3"])
        x = self.up10(self.up21(self.up32(x, f["layer2"]), f["layer1"]), f["conv1"])
        return self.head(x)
