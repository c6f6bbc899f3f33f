"""Metric registry (DESIGN.md section 3).

A *family* computes one or more named metrics from the features of one extractor; evaluation groups the
requested metrics by extractor and extracts features of the generated samples, the reference set and
(where a family wants it) the data-versus-data floor set once per extractor. Every value goes into the
record with its source: extractor, weights hash, reference description and sample count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from torch import Tensor


class Extractor(Protocol):
    name: str
    weights_hash: str | None

    def __call__(self, x: Tensor) -> Tensor: ...


@dataclass
class Features:
    gen: Tensor
    ref: Tensor
    gen_labels: Tensor | None = None
    ref_labels: Tensor | None = None
    floor: Tensor | None = None


@dataclass(frozen=True)
class MetricFamily:
    names: tuple[str, ...]
    extractor: str
    compute: Callable[[Features, Any], dict[str, float]]       # (features, data source) -> values
    unavailable: Callable[[Any], str | None] = lambda data: None  # reason it cannot run on this data
    default: Callable[[Any], bool] = lambda data: False          # in the default metric set for data
    needs_floor: bool = False


FAMILIES: list[MetricFamily] = []
EXTRACTORS: dict[str, Callable[[Any], Extractor]] = {}


def register_family(family: MetricFamily) -> MetricFamily:
    taken = set(family.names) & set(metric_names())
    if taken:
        raise KeyError(f"metric(s) {sorted(taken)} registered twice")
    FAMILIES.append(family)
    return family


def register_extractor(name: str, factory: Callable[[Any], Extractor]) -> None:
    EXTRACTORS[name] = factory


def metric_names() -> list[str]:
    return [n for f in FAMILIES for n in f.names]


def family_of(name: str) -> MetricFamily:
    for f in FAMILIES:
        if name in f.names:
            return f
    raise KeyError(f"unknown metric '{name}'; choose from: {', '.join(sorted(metric_names()))}")


def default_metrics(data) -> list[str]:
    return [n for f in FAMILIES if f.default(data) and f.unavailable(data) is None for n in f.names]


def check_metrics(names: list[str], data) -> None:
    """Fail before training when a requested metric is unknown or cannot run on this data."""
    for n in names:
        reason = family_of(n).unavailable(data)
        if reason:
            raise ValueError(f"metric '{n}' cannot run on data '{data.spec.name}': {reason}")


@dataclass
class MetricResult:
    values: dict[str, float | None] = field(default_factory=dict)
    sources: dict[str, dict] = field(default_factory=dict)


def evaluate(names: list[str], samples: Tensor, labels: Tensor | None, data, n_ref: int) -> MetricResult:
    """Compute ``names`` for ``samples``; the reference set is ``data.reference(n_ref)``."""
    check_metrics(names, data)
    families = list({id(f): f for f in map(family_of, names)}.values())
    result = MetricResult()
    ref_x, ref_y = data.reference(n_ref)
    floor_x = data.floor(n_ref)[0] if any(f.needs_floor for f in families) else None
    for ext_name in dict.fromkeys(f.extractor for f in families):
        ext = EXTRACTORS[ext_name](data)
        feats = Features(gen=ext(samples), ref=ext(ref_x), gen_labels=labels, ref_labels=ref_y,
                         floor=ext(floor_x) if floor_x is not None else None)
        for fam in (f for f in families if f.extractor == ext_name):
            values = fam.compute(feats, data)
            for n in fam.names:
                if n not in names:
                    continue
                v = values[n]
                result.values[n] = float(v) if v is not None and math.isfinite(v) else None
                result.sources[n] = {"extractor": ext.name, "weights_hash": ext.weights_hash,
                                     "reference": f"{data.spec.name} reference, n={len(ref_x)}",
                                     "n_samples": len(samples)}
    return result
