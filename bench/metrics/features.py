"""Distribution metrics on the features of any extractor, through torch-fidelity's own metric code.

- Frechet distance (Heusel et al. 2017): ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) between
  Gaussians fitted to the two feature sets (torch-fidelity's ``fid_statistics_to_metric``). In Inception
  features this is FID; in any other extractor it is "FD <extractor>", never FID (PROTOCOLS.md).
- KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel, averaged over random
  subsets (torch-fidelity's ``kid_features_to_metric``; subset size min(eval.kid_subset_size, n)).
- Inception Score (Salimans et al. 2016) from unbiased logits, 10 splits (``isc_features_to_metric``).
- precision/recall (k = 3) and density/coverage (k = 5): ``bench.metrics.prdc``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from torch import Tensor

from bench.metrics.prdc import DC_NEIGHBOURS, PR_NEIGHBOURS, density_coverage, precision_recall
from bench.metrics.reference import statistics
from bench.metrics.registry import Features, MetricFamily, MetricOptions, NotApplicable, register_family

RNG_SEED = 2020        # torch-fidelity's default seed for KID subsets and IS splits


def _f64(stats: dict) -> dict:
    return {k: np.asarray(v, dtype=np.float64) for k, v in stats.items()}


def frechet_from_stats(s1: dict, s2: dict) -> float:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return fid_statistics_to_metric(_f64(s1), _f64(s2), False)[KEY_METRIC_FID]


def frechet_distance(a: Tensor, b: Tensor | None = None, b_stats: dict | None = None) -> float:
    """Frechet distance between the Gaussians fitted to ``a`` and ``b`` (or given statistics of b)."""
    return frechet_from_stats(statistics(a), b_stats if b_stats is not None else statistics(b))


def kid(gen: Tensor, ref: Tensor, subset_size: int, subsets: int) -> dict:
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    m = min(subset_size, len(gen), len(ref))
    if m < 2:
        raise NotApplicable(f"KID needs at least 2 samples on each side, got {len(gen)} and {len(ref)}")
    out = kid_features_to_metric(gen.float().cpu(), ref.float().cpu(), kid_subsets=subsets, kid_subset_size=m,
                                 rng_seed=RNG_SEED, verbose=False)
    return {"value": out[KEY_METRIC_KID_MEAN], "std": out[KEY_METRIC_KID_STD], "subset_size": m}


def inception_score(logits: Tensor, splits: int = 10) -> dict:
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    out = isc_features_to_metric(logits.cpu(), splits=splits, shuffle=True, rng_seed=RNG_SEED)
    return {"value": out[KEY_METRIC_ISC_MEAN], "std": out[KEY_METRIC_ISC_STD]}


def register_feature_metrics(extractor: str, *, fd: str | None, kid_name: str | None, suffix: str,
                             unavailable: Callable[[Any, MetricOptions], str | None],
                             default: Callable[[Any], bool]) -> None:
    """FD, KID, precision/recall and density/coverage in ``extractor``'s features."""
    prec, rec, dens, cov = (f"{m}{suffix}" for m in ("precision", "recall", "density", "coverage"))

    def fd_compute(f: Features, data, opts: MetricOptions) -> dict:
        return {fd: frechet_distance(f.gen, f.ref, f.ref_stats)}

    def kid_compute(f: Features, data, opts: MetricOptions) -> dict:
        out = kid(f.gen, f.ref, opts.kid_subset_size, opts.kid_subsets)
        return {kid_name: out["value"], "details": {"kid_std": out["std"], "kid_subset_size": out["subset_size"],
                                                     "kid_subsets": opts.kid_subsets}}

    def pr_compute(f: Features, data, opts: MetricOptions) -> dict:
        out = precision_recall(f.gen, f.ref, PR_NEIGHBOURS, opts.distance_batch_size)
        return {prec: out["precision"], rec: out["recall"], "details": {"k": PR_NEIGHBOURS}}

    def dc_compute(f: Features, data, opts: MetricOptions) -> dict:
        out = density_coverage(f.gen, f.ref, DC_NEIGHBOURS, opts.distance_batch_size)
        return {dens: out["density"], cov: out["coverage"], "details": {"k": DC_NEIGHBOURS}}

    common = dict(extractor=extractor, unavailable=unavailable, default=default)
    if fd:
        register_family(MetricFamily(names=(fd,), compute=fd_compute, needs_ref_features=False, **common))
    if kid_name:
        register_family(MetricFamily(names=(kid_name,), compute=kid_compute, **common))
    register_family(MetricFamily(names=(prec, rec), compute=pr_compute, **common))
    register_family(MetricFamily(names=(dens, cov), compute=dc_compute, **common))
