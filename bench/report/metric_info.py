"""What each metric name means for a reader: direction (lower or higher is better), label, source.

Metrics the table does not know are still shown, with no direction (and so no "best" marking and no
Pareto front). ``<name>_floor`` is the data-versus-data value of ``<name>`` (PROTOCOLS.md: report the
floor beside W2 and energy distance); it is drawn as a reference line, never ranked.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    direction: str | None          # "lower", "higher" or None (unknown)
    label: str
    about: str = ""


LOWER, HIGHER = "lower", "higher"
METRICS: dict[str, MetricInfo] = {
    "fid": MetricInfo(LOWER, "FID", "Frechet distance in Inception pool3 features (Heusel et al. 2017)"),
    "fd_dinov2": MetricInfo(LOWER, "FD-DINOv2", "Frechet distance in DINOv2 features"),
    "fd_domain": MetricInfo(LOWER, "FD-domain", "Frechet distance in the features of a classifier trained on the data"),
    "fd_raw": MetricInfo(LOWER, "FD-raw", "Frechet distance on the raw coordinates or pixels"),
    "kid": MetricInfo(LOWER, "KID", "kernel inception distance (Binkowski et al. 2018)"),
    "is": MetricInfo(HIGHER, "IS", "Inception Score"),
    "isc": MetricInfo(HIGHER, "IS", "Inception Score"),
    "precision": MetricInfo(HIGHER, "precision", "improved precision, k = 3 (Kynkaanniemi et al. 2019)"),
    "recall": MetricInfo(HIGHER, "recall", "improved recall, k = 3 (Kynkaanniemi et al. 2019)"),
    "density": MetricInfo(HIGHER, "density", "density, k = 5 (Naeem et al. 2020)"),
    "coverage": MetricInfo(HIGHER, "coverage", "coverage, k = 5 (Naeem et al. 2020)"),
    "class_acc": MetricInfo(HIGHER, "class accuracy", "share of conditional samples classified as their label"),
    "modes": MetricInfo(HIGHER, "modes", "modes captured (VEEGAN / PacGAN protocol)"),
    "stacked_modes": MetricInfo(HIGHER, "modes (stacked)", "digit triples captured of 1,000 (Stacked-MNIST protocol)"),
    "stacked_kl": MetricInfo(LOWER, "KL (stacked)", "KL(generated triples || data triples)"),
    "classes_covered": MetricInfo(HIGHER, "classes covered", "classes the domain classifier finds among the samples"),
    "hq_frac": MetricInfo(HIGHER, "HQ fraction", "share of samples within 3 std of a mode (read with modes)"),
    "reverse_kl": MetricInfo(LOWER, "reverse KL", "KL(mode histogram of samples || true mode weights)"),
    "kl": MetricInfo(LOWER, "KL", "KL(generated mode distribution || data mode distribution)"),
    "energy": MetricInfo(LOWER, "energy distance", "energy distance to held-out data (Szekely and Rizzo 2013)"),
    "w2": MetricInfo(LOWER, "W2", "2-Wasserstein distance to held-out data"),
    "swd": MetricInfo(LOWER, "SWD", "sliced Wasserstein distance to held-out data"),
    "mmd": MetricInfo(LOWER, "MMD", "maximum mean discrepancy to held-out data"),
}
# Which metric a page leads with (the quality axis of the Pareto plot): the first one present.
PRIMARY_ORDER = ("fid", "fd_dinov2", "fd_domain", "energy", "w2", "swd", "mmd", "fd_raw", "kid", "reverse_kl",
                 "kl", "modes", "precision", "recall", "coverage")
FLOOR_SUFFIX = "_floor"
SPREAD_SUFFIX = "_floor_spread"      # standard deviation of the floor over independent data draws
# A metric computed in another feature space keeps its meaning: precision_domain is precision in the
# domain classifier's features (bench/metrics), kid_raw KID on the coordinates.
SPACE_SUFFIXES = {"_domain": "domain", "_raw": "raw", "_dinov2": "DINOv2", "_inception": "Inception"}


def info(name: str) -> MetricInfo:
    if name.endswith(SPREAD_SUFFIX):
        base = name[: -len(SPREAD_SUFFIX)]
        return MetricInfo(None, f"{METRICS[base].label if base in METRICS else base} floor spread",
                          f"standard deviation of the {base} floor over independent data draws")
    if name.endswith(FLOOR_SUFFIX):
        base = name[: -len(FLOOR_SUFFIX)]
        return MetricInfo(None, f"{METRICS[base].label if base in METRICS else base} floor",
                          f"data-versus-data value of {base}: the best a finite sample can reach")
    if name in METRICS:
        return METRICS[name]
    for suffix, space in SPACE_SUFFIXES.items():
        base = name[: -len(suffix)]
        if name.endswith(suffix) and base in METRICS:
            known = METRICS[base]
            return MetricInfo(known.direction, f"{known.label} ({space})", f"{known.about}, in {space} features")
    return MetricInfo(None, name, "not in the report's metric table: direction unknown")


def direction(name: str) -> str | None:
    return info(name).direction


def is_floor(name: str) -> bool:
    """Floors and their spreads: reference values, never ranked or shown as columns."""
    return name.endswith(FLOOR_SUFFIX) or name.endswith(SPREAD_SUFFIX)


def ordered(names) -> list[str]:
    """Known metrics in table order, then unknown ones alphabetically; floors right after their metric."""
    names = set(names)
    known = [n for n in METRICS if n in names]
    known += sorted((n for n in names if n not in METRICS and not is_floor(n) and direction(n)),
                    key=lambda n: (list(METRICS).index(n.rsplit("_", 1)[0]), n))
    rest = sorted(n for n in names if n not in known and not is_floor(n))
    out = []
    for n in known + rest:
        out.append(n)
        if n + FLOOR_SUFFIX in names:
            out.append(n + FLOOR_SUFFIX)
    out += sorted(n for n in names if is_floor(n) and n not in out)
    return out


def primary(names) -> str | None:
    names = set(names)
    return next((n for n in PRIMARY_ORDER if n in names), None)


def better(name: str, a: float, b: float) -> bool:
    """Whether ``a`` is at least as good as ``b`` for metric ``name`` (which must have a direction)."""
    return a <= b if direction(name) == LOWER else a >= b
