"""Metrics for 2-D toys on the raw coordinates (the ``raw`` extractor).

Mode coverage (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018; PROTOCOLS.md): a sample is high
quality when it lies within 3 standard deviations of its nearest mode mean; ``modes`` counts components
that are the nearest mode of at least one high-quality sample, ``hq_frac`` is the high-quality fraction,
``reverse_kl`` is KL(histogram of high-quality samples over modes || true mode weights).

Distances (``bench.metrics.distances``): ``fd_raw`` (exact Frechet distance of the Gaussians fitted to the
2-D coordinates), ``w2`` (exact optimal transport), ``mmd`` (multi-bandwidth RBF), ``energy``, ``swd``;
each ``<name>_floor`` is the same distance between independent data samples of the same size, the
data-versus-data floor that PROTOCOLS.md asks to report beside it (the mean over the data's floor draws,
with ``<name>_floor_spread`` their standard deviation). ``precision_raw`` ... ``coverage_raw``:
``bench.metrics.prdc`` on the coordinates.
"""
from __future__ import annotations

import torch
from torch import Tensor

from bench.metrics import distances as D
from bench.metrics.features import frechet_distance, register_feature_metrics
from bench.metrics.registry import Features, MetricFamily, NotApplicable, register_extractor, register_family


class RawExtractor:
    """The coordinates themselves."""

    name, weights_hash, info, cache_reference = "raw", None, {}, False

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        return {"features": x.flatten(1).double()}


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


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Unbiased energy distance between samples ``x [N, D]`` and ``y [M, D]``.

    The bandwidth only shapes the MMD half of the shared pass, discarded here, so any positive one does.
    """
    return D.energy_and_mmd(x, y, [1.0])[0]


def _both(f: Features, name: str, fn) -> dict:
    """``name`` of the generated samples, where wanted (the registry computes ``name_floor`` as ``name`` of
    independent data samples, ``bench.metrics.registry.floor_draws``)."""
    return {name: fn(f.gen)} if name in f.wanted else {}


def _kernel_distances(f: Features, data, opts) -> dict:
    """energy and mmd share one blocked pass over the pairwise distances."""
    if "kernel" not in f.memo:
        bw = D.rbf_bandwidths(f.ref)
        e, m, _ = D.energy_and_mmd(f.gen, f.ref, bw)
        f.memo["kernel"] = ({"energy": e, "mmd": m}, bw)
    out, bw = f.memo["kernel"]
    return out, bw


def _w2(f: Features, data, opts) -> dict:
    if len(f.gen) != len(f.ref):
        raise NotApplicable(f"exact W2 compares equal-size sets; got {len(f.gen)} samples and {len(f.ref)} reference")
    return _both(f, "w2", lambda x: D.w2_exact(x, f.ref))


def _energy(f: Features, data, opts) -> dict:
    out, _ = _kernel_distances(f, data, opts)
    return {k: v for k, v in out.items() if k.startswith("energy")}


def _mmd(f: Features, data, opts) -> dict:
    out, bw = _kernel_distances(f, data, opts)
    return {**{k: v for k, v in out.items() if k.startswith("mmd")}, "details": {"rbf_bandwidths": bw}}


def _points(data, opts) -> str | None:
    return None if data.spec.kind == "points" else "computed on 2-D points (toy data) only"


def _is_points(data) -> bool:
    return data.spec.kind == "points"


register_extractor("raw", lambda data, opts: RawExtractor())

register_family(MetricFamily(
    names=("modes", "hq_frac", "reverse_kl"), extractor="raw",
    compute=lambda f, data, opts: mode_coverage(f.gen, data.modes.means, data.modes.std, data.modes.weights),
    unavailable=lambda data, opts: None if getattr(data, "modes", None) is not None
    else "the data has no known Gaussian modes (ring8, grid25 and bimodal do)",
    default=lambda data: True,
))

for _names, _fn in (
    (("fd_raw", "fd_raw_floor"), lambda f, d, o: _both(f, "fd_raw", lambda x: frechet_distance(x, f.ref))),
    (("w2", "w2_floor"), _w2),
    (("energy", "energy_floor"), _energy),
    (("mmd", "mmd_floor"), _mmd),
    (("swd", "swd_floor"), lambda f, d, o: {**_both(f, "swd", lambda x: D.swd(x, f.ref)),
                                            "details": {"swd_directions": D.SWD_DIRECTIONS}}),
):
    register_family(MetricFamily(names=_names, extractor="raw", compute=_fn, needs_floor=True,
                                 unavailable=_points, default=_is_points))

# Not in the toy default set: on top of the distances above they cost ~4 s more at 10K samples.
register_feature_metrics("raw", fd=None, kid_name=None, suffix="_raw", unavailable=_points, default=lambda data: False)
