"""CLIP image embeddings for the memorisation check (PAPER.md Fig. 6: nearest ImageNet training images by
CLIP cosine similarity), through transformers' ``CLIPModel``.

``eval.memorisation_features``: ``clip`` (the hub id ``DEFAULT``), ``clip:ID_OR_PATH`` (another hub id or
a local folder written by ``save_pretrained``), or ``inception`` (the run's Inception pool3 features).
Weights must already be on this machine (a local folder, or the hub cache): ``check`` says so in one line
before anything runs, with the command that fetches them where there is network.

Preprocessing follows CLIP's image processor: uint8 as image files, resize of the short side to the
model's input size (bicubic, antialiased), centre crop, normalisation by CLIP's mean and std.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.metrics.fidelity import to_uint8_rgb

DEFAULT = "openai/clip-vit-large-patch14"
MEAN = (0.48145466, 0.4578275, 0.40821073)      # CLIP's image processor (OPENAI_CLIP_MEAN / STD)
STD = (0.26862954, 0.26130258, 0.27577711)


def source(choice: str) -> str | None:
    """The CLIP hub id or folder of ``eval.memorisation_features``; None for ``inception``."""
    if choice == "inception":
        return None
    if choice == "clip":
        return DEFAULT
    if choice.startswith("clip:") and len(choice) > 5:
        return choice[5:]
    raise ValueError(f"eval.memorisation_features: '{choice}'; choose clip, clip:HUB_ID_OR_PATH or inception")


def check(choice: str) -> None:
    """Refuse, in one line, CLIP weights that are not on this machine."""
    src = source(choice)
    if src is None:
        return
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ValueError("eval.memorisation_features=clip needs transformers (pip install transformers); "
                         "or use eval.memorisation_features=inception") from None
    if Path(src).expanduser().is_dir():
        if not (Path(src).expanduser() / "config.json").is_file():
            raise ValueError(f"eval.memorisation_features={choice}: {src} holds no config.json (a folder "
                             f"written by CLIPModel.save_pretrained)")
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(src, "config.json"), str):
        raise ValueError(f"CLIP weights '{src}' are not on this machine: run once with network "
                         f"`python -c \"from transformers import CLIPModel; CLIPModel.from_pretrained('{src}')\"`, "
                         f"or set eval.memorisation_features=clip:PATH (a local copy) or =inception")


class ClipFeatures:
    """``x`` [B, C, H, W] in the data's value range -> L2-normalised CLIP image embeddings [B, d]."""

    def __init__(self, choice: str, value_range, device="cpu"):
        from transformers import CLIPModel
        from transformers.utils import logging

        logging.set_verbosity_error()
        src = source(choice)
        path = Path(src).expanduser()
        self.model = CLIPModel.from_pretrained(str(path) if path.is_dir() else src).eval().to(device)
        self.size = int(self.model.config.vision_config.image_size)
        self.name, self.source, self.value_range, self.device = "clip", src, value_range, torch.device(device)
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, x: Tensor) -> Tensor:
        u = to_uint8_rgb(x, self.value_range).to(self.device).float() / 255.0
        h, w = u.shape[-2:]
        scale = self.size / min(h, w)
        u = F.interpolate(u, size=(max(self.size, round(h * scale)), max(self.size, round(w * scale))),
                          mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        top, left = (u.shape[-2] - self.size) // 2, (u.shape[-1] - self.size) // 2
        return (u[..., top:top + self.size, left:left + self.size] - self.mean) / self.std

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        out = self.model.get_image_features(pixel_values=self.preprocess(x))
        out = out if isinstance(out, Tensor) else out.pooler_output       # transformers 5 wraps it
        return F.normalize(out.float(), dim=-1).cpu()
