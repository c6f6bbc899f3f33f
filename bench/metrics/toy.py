"""Metrics for 2-D toys on the raw coordinates.

Mode coverage (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018; PROTOCOLS.md): a sample is high
quality when it lies within 3 standard deviations of its nearest mode mean; ``modes`` counts components
that are the nearest mode of at least one high-quality sample, ``hq_frac`` is the high-quality fraction,
``reverse_kl`` is KL(histogram of high-quality samples over modes || true mode weights).

Energy distance (Szekely and Rizzo 2013): E = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||, with unbiased
within-set terms; ``energy_floor`` is the same distance between two independent held-out data samples.
"""
from __future__ import annotations

import torch
from torch import Tensor

from bench.metrics.registry import Features, MetricFamily, register_extractor, register_family


class RawExtractor:
    """The coordinates themselves."""

    name, weights_hash = "raw", None

    def __call__(self, x: Tensor) -> Tensor:
        return x.flatten(1).double()


def mode_coverage(samples: Tensor, means: Tensor, std: float, weights: Tensor) -> dict[str, float]:
    d = torch.cdist(samples.double(), means.double(), compute_mode="donot_use_mm_for_euclid_dist")
    dist, nearest = d.min(dim=1)
    hq = dist < 3 * std
    counts = torch.bincount(nearest[hq], minlength=len(means)).double()
    n_hq = counts.sum()
    if n_hq == 0:
        return {"modes": 0.0, "hq_frac": 0.0, "reverse_kl": None}
    q = counts / n_hq
    nz = q > 0
    kl = (q[nz] * (q[nz] / weights.double()[nz]).log()).sum()
    return {"modes": float(nz.sum()), "hq_frac": float(hq.double().mean()), "reverse_kl": float(kl)}


def _mean_dist(a: Tensor, b: Tensor, exclude_diagonal: bool, chunk: int = 2048) -> float:
    total = 0.0
    for i in range(0, len(a), chunk):
        total += torch.cdist(a[i:i + chunk], b).sum().item()
    n_pairs = len(a) * len(b) - (len(a) if exclude_diagonal else 0)
    return total / n_pairs


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Unbiased energy distance between samples ``x [N, D]`` and ``y [M, D]``."""
    x, y = x.double(), y.double()
    return 2 * _mean_dist(x, y, False) - _mean_dist(x, x, True) - _mean_dist(y, y, True)


register_extractor("raw", lambda data: RawExtractor())

register_family(MetricFamily(
    names=("modes", "hq_frac", "reverse_kl"), extractor="raw",
    compute=lambda f, data: mode_coverage(f.gen, data.modes.means, data.modes.std, data.modes.weights),
    unavailable=lambda data: None if getattr(data, "modes", None) is not None
    else "the data has no known Gaussian modes (ring8, grid25 and bimodal do)",
    default=lambda data: True,
))

register_family(MetricFamily(
    names=("energy", "energy_floor"), extractor="raw", needs_floor=True,
    compute=lambda f, data: {"energy": energy_distance(f.gen, f.ref), "energy_floor": energy_distance(f.floor, f.ref)},
    unavailable=lambda data: None if data.spec.kind == "points" else "energy distance is computed on 2-D points",
    default=lambda data: data.spec.kind == "points",
))
