"""MAE pre-training of the drifting feature encoder (PAPER.md section 2.2; Deng et al. 2026, A.3-A.4).

- Masking: the (patchified) input grid is split into ``mask_patch`` x ``mask_patch`` patches, each zeroed
  with probability ``mask_ratio`` (0.5); nothing is dropped from the sequence.
- Loss: L2 reconstruction on the masked regions only ([code]: squared error summed over channels,
  averaged over masked positions, per sample), optionally mixed with a classification loss on a linear
  head over the globally pooled layer4: ``lambda L_cls + (1 - lambda) L_recon`` where lambda ramps
  linearly 0 -> ``cls_lambda`` over ``cls_warmup`` steps from the start of the last ``cls_ft_steps``
  steps (the release's "cls ft": the last 3k of the MAE steps).
- ``MAEPretraining`` is a ``Method`` for the shared trainer (checkpoint/resume/EMA come with it); the
  mask of sample i comes from ``batch.random``, so one and N processes agree and resume is exact.
- ``save_encoder`` / ``load_encoder``: the exported checkpoint holds the encoder's weights (by default an
  EMA, as the release exports EMA parameters), its architecture, and where it came from; drifting configs
  reference it by path and SHA-256.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.base import Batch, DataSpec, StepRandom
from methods.drifting.encoder import ResNetConfig, ResNetEncoder, UNetDecoder, patchify

FORMAT = "driftbench-encoder/2"   # 2: the release's GroupNorm (down to 1 channel per group, eps 1e-6)


class MAEResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, cfg: ResNetConfig):
        super().__init__()
        self.encoder = ResNetEncoder(in_channels, cfg)
        self.decoder = UNetDecoder(cfg.width, in_channels * cfg.input_patch ** 2, cfg.gn_min_channels)
        self.fc = nn.Linear(8 * cfg.width, max(1, num_classes))

    def forward(self, x_in: Tensor) -> tuple[Tensor, Tensor]:
        """Reconstruction of the patchified input and class logits, from the (masked) patchified input."""
        f = self.encoder.forward_patched(x_in)
        return self.decoder(f), self.fc(f["layer4"].mean(dim=(2, 3)))


def patch_mask(u: Tensor, shape: tuple[int, int], patch: int, ratio: float) -> Tensor:
    """``[B, 1, H, W]`` mask (1 = masked) from uniforms ``u [B, H/patch, W/patch]``."""
    m = (u < ratio).float()
    return m.repeat_interleave(patch, 1).repeat_interleave(patch, 2)[:, None, :shape[0], :shape[1]]


def mae_losses(model: MAEResNet, x: Tensor, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample masked reconstruction loss, cross-entropy, and correctness."""
    xp = patchify(x, model.encoder.cfg.input_patch)
    recon, logits = model(xp * (1.0 - mask))
    se = ((recon.float() - xp.float()) ** 2 * mask).sum(dim=(1, 2, 3))
    rec = se / (mask.sum(dim=(1, 2, 3)) + 1e-8)
    ce = F.cross_entropy(logits.float(), y, reduction="none")
    return rec, ce, (logits.argmax(-1) == y).float()


class MAEPretraining:
    """The MAE objective as a harness ``Method`` (training only: it has nothing to sample)."""

    name = "mae"
    exact_accumulation = True   # a mean of per-sample losses

    def __init__(self, cfg: ResNetConfig, mask_ratio: float, mask_patch: int, total_steps: int,
                 cls_ft_steps: int = 0, cls_warmup: int = 1000, cls_lambda: float = 0.1):
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"encoder.mask_ratio must lie in (0, 1), got {mask_ratio}")
        if mask_patch < 1 or cls_ft_steps < 0 or cls_warmup < 0 or not 0 <= cls_lambda <= 1:
            raise ValueError("encoder.mask_patch must be >= 1, cls_ft_steps and cls_warmup >= 0, cls_lambda in [0, 1]")
        self.cfg, self.mask_ratio, self.mask_patch = cfg, mask_ratio, mask_patch
        self.total_steps, self.cls_ft_steps = total_steps, cls_ft_steps
        self.cls_warmup, self.cls_lambda = cls_warmup, cls_lambda
        self.conditional = False

    def lambda_cls(self, step: int) -> float:
        start = self.total_steps - self.cls_ft_steps
        if self.cls_ft_steps == 0 or step < start:
            return 0.0
        return self.cls_lambda * min(1.0, (step - start) / max(1, self.cls_warmup))

    def mask(self, random: StepRandom, h: int, w: int) -> Tensor:
        """Masks of this process's samples for an ``h`` x ``w`` (patchified) grid, from ``random``."""
        p = self.mask_patch
        return patch_mask(random.rand(-(-h // p), -(-w // p)), (h, w), p, self.mask_ratio)

    def loss(self, net: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        ip = self.cfg.input_patch
        h, w = batch.x.shape[-2] // ip, batch.x.shape[-1] // ip
        rec, ce, acc = mae_losses(_unwrap(net), batch.x, batch.y, self.mask(batch.random, h, w))
        lam = self.lambda_cls(batch.step)
        loss = (lam * ce + (1.0 - lam) * rec).mean()
        rec, ce = rec.detach(), ce.detach()
        return loss, {"recon": rec.mean(), "cls": ce.mean(), "acc": acc.mean(), "lambda_cls": lam}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _unwrap(net: nn.Module) -> MAEResNet:
    return net.module if hasattr(net, "module") and not isinstance(net, MAEResNet) else net


def save_encoder(path: Path, model: MAEResNet, spec: DataSpec, meta: dict) -> str:
    """Write the encoder checkpoint atomically; returns its SHA-256."""
    from methods.harness.checkpoint import save_atomic
    payload = {"format": FORMAT, "arch": asdict(model.encoder.cfg), "in_channels": model.encoder.in_channels,
               "data": {"name": spec.name, "shape": list(spec.shape)}, "meta": meta,
               "state_dict": {k: v.detach().cpu() for k, v in model.encoder.state_dict().items()}}
    save_atomic(payload, Path(path))
    return file_sha256(Path(path))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_encoder(path: str | Path, expected_sha256: str | None = None, how_to_make: str = "") -> tuple[ResNetEncoder, dict]:
    """The frozen encoder stored at ``path`` and the checkpoint's header; one-line errors otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"encoder checkpoint {path} not found; make it with: {how_to_make}"
                                if how_to_make else f"encoder checkpoint {path} not found")
    digest = file_sha256(path)
    if expected_sha256 and digest != expected_sha256:
        raise ValueError(f"encoder checkpoint {path} has SHA-256 {digest[:12]}..., the config expects "
                         f"{expected_sha256[:12]}...; point method.encoder_path at the right file or set "
                         f"method.encoder_sha256=null")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise ValueError(f"{path} is not a driftbench encoder checkpoint of format {FORMAT} (found {found}); "
                         f"make it again: {how_to_make}" if how_to_make else
                         f"{path} is not a driftbench encoder checkpoint of format {FORMAT} (found {found})")
    enc = ResNetEncoder(state["in_channels"], ResNetConfig(**state["arch"]))
    enc.load_state_dict(state["state_dict"])
    enc.requires_grad_(False).eval()
    header = {k: v for k, v in state.items() if k != "state_dict"}
    header["sha256"] = digest
    return enc, header
