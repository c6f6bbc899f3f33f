"""Feature-space drifting loss (PAPER.md sections 2.1, 2.3, 2.7; Deng et al. 2026, Eqs. 13-14, A.5).

From a frozen encoder's feature maps (every ``every_k_block``-th block of each stage plus each stage
output, see ``encoder.py``) every map ``[B, C, H, W]`` gives these sets of C-dim vectors, one drifting loss
each ([code] ``get_activations`` key names):

- ``{map}``: the H*W per-location vectors;
- ``{map}_mean``, ``{map}_std``: global mean and std over locations;
- ``{map}_mean_{s}``, ``{map}_std_{s}``: mean and std over s x s patches, s in (2, 4) where s divides H, W;

plus ``norm_x``, the encoder input's per-channel RMS ``sqrt(mean x^2 + 1e-6)`` ([code]; the paper says
"mean of x^2"), and ``global``, the raw generator output flattened into one vector (the vanilla loss).
Std is ``sqrt(var + 1e-6)`` (population variance). A 1x1 map gives only its location vector (its mean
would repeat it and its std is a constant); the release's maps are never 1x1.

Each key is one call of ``drift_loss`` on groups = (class, location): ``[classes * L, N, C]``, so S and the
lambdas are shared by all classes and locations of the key (PAPER.md 2.4) and nothing loops over samples,
classes or locations. The per-group losses are averaged (per-location losses averaged within a map, as
are classes) and the keys are summed (PAPER.md 2.3, [code]).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.drifting.encoder import ResNetEncoder, patchify
from methods.drifting.loss import DriftLossOptions, drift_loss

STD_EPS = 1e-6


def _std(x: Tensor, dim) -> Tensor:
    x = x.float()
    return (x.var(dim=dim, unbiased=False) + STD_EPS).sqrt()


def _tokens(f: Tensor) -> Tensor:
    """``[B, C, h, w]`` -> ``[B, h * w, C]``."""
    return f.flatten(2).transpose(1, 2)


def map_vectors(name: str, f: Tensor, patch_sizes: tuple[int, ...] = (2, 4)) -> dict[str, Tensor]:
    """The vector sets of one feature map ``[B, C, H, W]``, each ``[B, L, C]``.

    A 1x1 map yields only its single location (its mean would repeat it, its std is constant).
    """
    b, c, h, w = f.shape
    out = {name: _tokens(f)}
    if h * w == 1:
        return out
    out[f"{name}_mean"] = f.mean(dim=(2, 3))[:, None]
    out[f"{name}_std"] = _std(f, dim=(2, 3))[:, None]
    for s in patch_sizes:
        if h % s == 0 and w % s == 0:
            mean = F.avg_pool2d(f, s)
            dev = f - mean.repeat_interleave(s, 2).repeat_interleave(s, 3)
            out[f"{name}_mean_{s}"] = _tokens(mean)
            out[f"{name}_std_{s}"] = _tokens((F.avg_pool2d(dev.float().pow(2), s) + STD_EPS).sqrt())
    return out


def feature_vectors(encoder: ResNetEncoder | None, x: Tensor, patch_sizes: tuple[int, ...] = (2, 4),
                    raw: bool = True, convnext: Callable[[Tensor], dict[str, Tensor]] | None = None
                    ) -> dict[str, Tensor]:
    """All vector sets of images ``x [B, ...]``: ``{key: [B, L, C]}``. ``encoder=None``: only ``global``;
    ``convnext``: the ConvNeXt-V2 vectors too (``convnext.py``, the pixel recipes)."""
    out: dict[str, Tensor] = {"global": x.flatten(1)[:, None]} if raw or encoder is None else {}
    if convnext is not None:
        out.update(convnext(x))
    if encoder is None:
        return out
    xp = patchify(x, encoder.cfg.input_patch)
    out["norm_x"] = (xp.float().pow(2).mean(dim=(2, 3)) + STD_EPS).sqrt()[:, None]
    for name, f in encoder(x, taps=True).items():      # the module's own call: compiled and hooked as a whole
        out.update(map_vectors(name, f, patch_sizes))
    return out


def _groups(v: Tensor, classes: int) -> Tensor:
    """``[classes * n, L, C]`` (class-major) -> ``[classes * L, n, C]``: one group per (class, location)."""
    b, l, c = v.shape
    return v.reshape(classes, b // classes, l, c).transpose(1, 2).reshape(classes * l, b // classes, c)


def feature_drift_loss(gen: dict[str, Tensor], pos: dict[str, Tensor], unc: dict[str, Tensor] | None,
                       classes: int, w_unc: Tensor | None = None,
                       temperatures: tuple[float, ...] = (0.02, 0.05, 0.2),
                       opts: DriftLossOptions | None = None,
                       all_reduce: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Sum over keys of the mean per-(class, location) drifting loss.

    Args:
        gen, pos, unc: ``{key: [classes * n, L, C]}`` vectors of generated samples, positives and
            unconditional negatives, class-major (rows ``c * n .. (c + 1) * n - 1`` belong to class c).
        w_unc: ``[classes]`` weight of the unconditional negatives of each class (CFG; default 1).
    Returns:
        The scalar loss and ``info``: per key ``{stat}/{key}`` and, averaged over keys, ``{stat}``, for
        stat in scale and the drift/attraction/repulsion mean squares per temperature.

    Keys of equal dimension C share one ``drift_loss`` call with one segment per key (each key keeps its
    own S and lambdas): the same numbers as a call per key, with far fewer small operations.
    """
    if not gen:
        raise ValueError("feature_drift_loss: no feature keys")
    buckets: dict[int, list[str]] = {}
    for key, g in gen.items():
        buckets.setdefault(g.shape[-1], []).append(key)
    total = None
    info: dict[str, Tensor] = {}
    for keys in buckets.values():
        groups = [g_.shape[1] * classes for g_ in (gen[k] for k in keys)]
        seg = torch.repeat_interleave(torch.arange(len(keys)), torch.tensor(groups))     # CPU: drift_loss moves it
        cat = lambda d: torch.cat([_groups(d[k], classes) for k in keys])  # noqa: E731
        kw = {}
        if unc is not None:
            kw["neg"] = cat(unc)
            if w_unc is not None:
                w = torch.cat([w_unc.float().repeat_interleave(gen[k].shape[1]) for k in keys])
                kw["w_neg"] = w.to(kw["neg"].device)[:, None].expand(-1, kw["neg"].shape[1])
        loss, key_info = drift_loss(cat(gen), cat(pos), temperatures=temperatures, opts=opts,
                                    all_reduce=all_reduce, segments=seg, num_segments=len(keys), **kw)
        per_key = loss.new_zeros(len(keys)).index_add_(0, seg.to(loss.device, non_blocking=True), loss) \
            / torch.tensor(groups, dtype=loss.dtype).to(loss.device, non_blocking=True)
        total = per_key.sum() if total is None else total + per_key.sum()
        for stat, v in key_info.items():
            for i, key in enumerate(keys):
                info[f"{stat}/{key}"] = v[i]
            info[stat] = info.get(stat, 0.0) + v.sum() / len(gen)
    return total, info
