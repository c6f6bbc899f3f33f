"""ConvNeXt-V2 features added to the pixel-MAE features of the pixel generators (PAPER.md 2.2, Table 9:
"+ MAE w/ ConvNeXt-V2"; the release's ``models/convnext.py`` ``get_activations`` and
``models/mae_model.py`` ``build_activation_function``).

The network is Hugging Face ``transformers``' ``ConvNextV2Model``, the implementation whose weights the
release converts (checkpoint ``facebook/convnextv2-base-22k-224``), loaded from a local folder or the hub.
From images in [-1, 1] ``[B, 3, H, W]`` (gradients flow through to the generator):

1. to [0, 1] without clipping (the release's ``postprocess_fn`` with ``has_clip=False``), resize to
   224 x 224 bilinearly with antialiasing (``jax.image.resize`` antialiases when it shrinks), ImageNet
   mean/std normalisation;
2. each of the 4 stages' outputs, standardised over channels at every location:
   ``(h - mean_c) / (std_c + 1e-3)`` (population std, in fp32);
3. vectors ``[B, L, C]``: ``convnext_stage_{i}`` per location for stages 1-3 (not the 56 x 56 stage 0),
   ``convnext_stage_{i}_mean`` and ``_std`` over locations for stages 0-3, ``convnext_global_mean``
   (the model's final LayerNorm, epsilon 1e-6 as the release's ``nn.LayerNorm``, of the last stage's
   spatial mean) and ``convnext_global_std`` (the std over locations of the standardised last stage,
   the same vector as ``convnext_stage_3_std``: the release computes both).

Key names follow the release's (``convenxt_stage_*`` there, a typo; ``global_mean`` there).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CHECKPOINT = "facebook/convnextv2-base-22k-224"   # the release's model_load_name for "base"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESOLUTION = 224
STANDARDISE_EPS = 1e-3
STD_EPS = 1e-6
FINAL_LN_EPS = 1e-6


def _std(x: Tensor, dim: int) -> Tensor:
    return (x.float().var(dim=dim, unbiased=False) + STD_EPS).sqrt()


def _standardise(h: Tensor) -> Tensor:
    """``[B, L, C]`` standardised over channels at every location (the release's ``normalize``)."""
    h = h.float()
    return (h - h.mean(-1, keepdim=True)) / (h.std(-1, unbiased=False, keepdim=True) + STANDARDISE_EPS)


class ConvNeXtFeatures(nn.Module):
    """Frozen ConvNeXt-V2 vector sets ``{key: [B, L, C]}`` of images in [-1, 1]."""

    def __init__(self, model: nn.Module, source: str = ""):
        super().__init__()
        from methods.harness.checkpoint import weights_sha256
        self.model, self.source, self.sha256 = model, source, weights_sha256(model)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "ConvNeXtFeatures":
        return super().train(False)          # frozen: never in training mode

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"ConvNeXt-V2 features need RGB images [B, 3, H, W], got {list(x.shape)}")
        x = (x.to(self.mean.dtype) + 1.0) / 2.0
        x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        states = self.model(pixel_values=x, output_hidden_states=True).hidden_states[1:]   # after each stage
        out: dict[str, Tensor] = {}
        for i, h in enumerate(states):
            z = _standardise(h.flatten(2).transpose(1, 2))
            if i > 0:
                out[f"convnext_stage_{i}"] = z
            out[f"convnext_stage_{i}_mean"] = z.mean(1, keepdim=True)
            out[f"convnext_stage_{i}_std"] = _std(z, 1)[:, None]
        ln = self.model.layernorm
        pooled = states[-1].float().mean(dim=(2, 3))
        out["convnext_global_mean"] = F.layer_norm(pooled, pooled.shape[-1:], ln.weight.float(), ln.bias.float(),
                                                   FINAL_LN_EPS)[:, None]
        out["convnext_global_std"] = out["convnext_stage_3_std"]
        return out


def load_convnext(source: str) -> ConvNeXtFeatures:
    """``ConvNextV2Model`` weights from a local folder (``save_pretrained`` layout) or a hub id; offline
    without them: one line that says how to supply them."""
    from pathlib import Path

    try:
        from transformers import ConvNextV2Model
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise ValueError("method.convnext needs the transformers package: pip install transformers") from None
    local = Path(source).expanduser()
    hf_logging.set_verbosity_error()
    try:
        model = ConvNextV2Model.from_pretrained(str(local) if local.exists() else source)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            f"method.convnext: cannot load ConvNeXt-V2 weights '{source}' ({str(e).splitlines()[0][:120]}); "
            f"where there is network run `hf download {CHECKPOINT} --local-dir DIR` and set "
            f"method.convnext=DIR") from None
    return ConvNeXtFeatures(model, source)
