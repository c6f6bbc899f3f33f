"""Metric registry (DESIGN.md section 3).

A *family* computes one or more named metrics from the features of one extractor. An ``Evaluation``
takes generated samples batch by batch as they are produced (``add``) and passes every batch once
through each extractor the requested metrics need, so the images themselves need not be kept; ``finish``
adds the reference features (computed once and cached under a key that hashes the reference data,
extractor, weights and n: ``bench.metrics.reference``), the data-versus-data floor where a family wants
one, and computes the values. Every value goes into the record with its source: extractor, weights hash
(and where the weights came from), reference description and cache key, and the sample counts.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import Tensor


@dataclass
class MetricOptions:
    """How metrics run; filled from ``eval.*`` (``bench.config.EvalConfig``)."""

    device: str = "cpu"
    feature_batch_size: int = 250          # samples per feature-extractor call
    cache_dir: str | None = None           # None: $DRIFTBENCH_CACHE, else ~/.cache/driftbench
    inception_weights: str = "auto"        # auto | torch-fidelity | fid-helper | PATH (bench.metrics.inception)
    reference: str | None = None           # ADM reference batch .npz for the Inception metrics
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    distance_batch_size: int = 1024        # rows per block of pairwise distances (bounds memory)
    quantize: str = "round"                # samples -> uint8 for image extractors: round | floor (ADM)

    def cache_root(self) -> Path:
        root = self.cache_dir or os.environ.get("DRIFTBENCH_CACHE") or Path.home() / ".cache" / "driftbench"
        return Path(root)


class Extractor(Protocol):
    name: str
    weights_hash: str | None
    info: dict                      # more provenance for the record (weights source, classifier accuracy)
    cache_reference: bool           # reference features are worth caching (expensive networks)

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        """One batch of samples -> features by layer; ``"features"`` is the embedding metrics use."""


@dataclass
class Reference:
    """What generated samples are compared with, as an extractor sees it."""

    x: Any                               # tensor of samples, uint8 NHWC array (image files), or None
    y: Tensor | None
    description: str
    identity: dict                       # hashed into the reference cache key
    stats: dict | None = None            # precomputed {"mu", "sigma"} of "features" (ADM npz)
    n: int | None = None                 # number of reference samples (default len(x))

    def __len__(self) -> int:
        return self.n if self.n is not None else len(self.x)


class NotApplicable(Exception):
    """Raised by a family whose metrics have no value for these samples (e.g. no labels); the reason
    goes into the record instead of a number."""


@dataclass
class Features:
    gen: Tensor                          # "features" of the generated samples [n, d]
    ref: Tensor | None                   # of the reference (None when only its statistics are needed)
    gen_labels: Tensor | None = None
    ref_labels: Tensor | None = None
    gen_layers: dict[str, Tensor] = field(default_factory=dict)
    ref_layers: dict[str, Tensor] = field(default_factory=dict)
    ref_stats: dict | None = None
    wanted: frozenset[str] = frozenset()
    memo: dict = field(default_factory=dict)   # shared between families of one extractor


@dataclass(frozen=True)
class MetricFamily:
    names: tuple[str, ...]
    extractor: str
    compute: Callable[[Features, Any, MetricOptions], dict]  # values by name, plus optional "details"
    unavailable: Callable[[Any, MetricOptions], str | None] = lambda data, opts: None
    default: Callable[[Any], bool] = lambda data: False      # in the default metric set for data
    needs_floor: bool = False
    needs_ref_features: bool = True      # False: reference statistics suffice (FID against ADM stats)


FAMILIES: list[MetricFamily] = []
EXTRACTORS: dict[str, Callable[[Any, MetricOptions], Extractor]] = {}


def register_family(family: MetricFamily) -> MetricFamily:
    taken = set(family.names) & set(metric_names())
    if taken:
        raise KeyError(f"metric(s) {sorted(taken)} registered twice")
    FAMILIES.append(family)
    return family


def register_extractor(name: str, factory: Callable[[Any, MetricOptions], Extractor]) -> None:
    EXTRACTORS[name] = factory


def metric_names() -> list[str]:
    return [n for f in FAMILIES for n in f.names]


def family_of(name: str) -> MetricFamily:
    for f in FAMILIES:
        if name in f.names:
            return f
    raise KeyError(f"unknown metric '{name}'; choose from: {', '.join(sorted(metric_names()))}")


def default_metrics(data, options: MetricOptions | None = None) -> list[str]:
    options = options or MetricOptions()
    return [n for f in FAMILIES if f.default(data) and f.unavailable(data, options) is None for n in f.names]


def check_metrics(names: list[str], data, options: MetricOptions | None = None) -> None:
    """Fail before training when a requested metric is unknown or cannot run on this data with these
    options (missing Inception weights, a reference file that is not there, ...)."""
    options = options or MetricOptions()
    for fam in dict.fromkeys(map(family_of, names)):
        reason = fam.unavailable(data, options)
        if reason:
            asked = [n for n in names if n in fam.names]
            raise ValueError(f"metric{'s' if len(asked) > 1 else ''} {', '.join(asked)} cannot run on data "
                             f"'{data.spec.name}': {reason}")


@dataclass
class MetricResult:
    values: dict[str, float | None] = field(default_factory=dict)
    sources: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)   # per extractor: features + metrics


def _finite(v) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


FLOOR, SPREAD = "_floor", "_floor_spread"
_FLOORS: dict[tuple, dict[str, list[float]]] = {}     # per process: floors do not depend on the samples


def floor_draws(fam: MetricFamily, feats: Features, ext: Extractor, data, n_ref: int, options: MetricOptions,
                wanted: set[str]) -> dict[str, list[float]]:
    """``name -> [value per draw]``: each wanted ``name_floor`` computed as ``name`` of an independent data
    sample against the reference, over every floor draw the data has (PROTOCOLS.md: the floor beside the
    distance; several draws give it an interval). Memoised by extractor, weights and reference content."""
    from bench.metrics.reference import floor_features, tensor_sha256

    names = [n[: -len(FLOOR)] for n in fam.names if n.endswith(FLOOR) and n in wanted]
    if not names:
        return {}
    key = (ext.name, ext.weights_hash, fam.names, tuple(names), n_ref, type(data).__name__,
           tensor_sha256(feats.ref) if feats.ref is not None else None, data.spec.name)
    if key not in _FLOORS:
        out: dict[str, list[float]] = {n: [] for n in names}
        for draw in range(data.floor_draws):
            other = floor_features(ext, data, n_ref, options, draw)
            values = fam.compute(Features(gen=other, ref=feats.ref, ref_labels=feats.ref_labels,
                                          ref_layers=feats.ref_layers, ref_stats=feats.ref_stats,
                                          wanted=frozenset(names)), data, options)
            for n in names:
                out[n].append(float(values[n]))
        _FLOORS[key] = out
    return _FLOORS[key]


class Evaluation:
    """Streams generated samples through every extractor the requested metrics need."""

    def __init__(self, names: list[str], data, n_ref: int, options: MetricOptions | None = None):
        self.options = options or MetricOptions()
        check_metrics(names, data, self.options)
        self.names, self.data, self.n_ref = list(names), data, n_ref
        self.families = list(dict.fromkeys(map(family_of, names)))
        self.extractors = {e: EXTRACTORS[e](data, self.options) for e in dict.fromkeys(f.extractor for f in self.families)}
        self.parts: dict[str, dict[str, list[Tensor]]] = {e: defaultdict(list) for e in self.extractors}
        self.labels: list[Tensor | None] = []
        self.seconds: dict[str, float] = defaultdict(float)
        self.n = 0

    def add(self, x: Tensor, y: Tensor | None = None) -> None:
        """Features of one batch of generated samples (any size; split into ``feature_batch_size``)."""
        for name, ext in self.extractors.items():
            t = time.perf_counter()
            for chunk in x.split(self.options.feature_batch_size):
                for layer, v in ext(chunk).items():
                    self.parts[name][layer].append(v.detach().cpu())
            self.seconds[name] += time.perf_counter() - t
        self.labels.append(None if y is None else y.detach().cpu())
        self.n += len(x)

    def gather(self, gather_rows: Callable[[Tensor], Tensor | None]) -> None:
        """Join the features of every process (``bench.evaluation.shard``): ``gather_rows(local)`` returns
        all processes' rows in sample order on the main process and None elsewhere, where this
        evaluation then holds nothing (only the main process calls ``finish``)."""
        for name in self.extractors:
            for layer in list(self.parts[name]):
                joined = gather_rows(torch.cat(self.parts[name][layer]))
                self.parts[name][layer] = [] if joined is None else [joined]
        if any(l is None for l in self.labels):
            joined_labels = None
        else:
            joined_labels = gather_rows(torch.cat(self.labels))
        n = gather_rows(torch.tensor([self.n]))
        self.labels = [joined_labels]
        self.n = 0 if n is None else int(n.sum())

    def finish(self) -> MetricResult:
        from bench.metrics.reference import reference_features

        if self.n == 0:
            raise ValueError("no samples were added to the evaluation")
        if any(l is None for l in self.labels) and not all(l is None for l in self.labels):
            raise ValueError("some sample batches came with labels and some without")
        gen_labels = None if self.labels[0] is None else torch.cat(self.labels)
        result = MetricResult()
        for name, ext in self.extractors.items():
            t = time.perf_counter()
            fams = [f for f in self.families if f.extractor == name]
            gen = {k: torch.cat(v) for k, v in self.parts[name].items()}
            ref = reference_features(ext, self.data, self.n_ref, self.options,
                                     need_features=any(f.needs_ref_features for f in fams))
            feats = Features(gen=gen["features"], ref=ref.layers.get("features"), gen_labels=gen_labels,
                             ref_labels=ref.labels, gen_layers=gen, ref_layers=ref.layers, ref_stats=ref.stats,
                             wanted=frozenset(self.names))
            base = {"extractor": ext.name, "weights_hash": ext.weights_hash, **ext.info,
                    "reference": ref.description, "reference_key": ref.key,
                    "n_samples": self.n, "n_reference": ref.n}
            for fam in fams:
                wanted = {n for n in self.names if n in fam.names}
                try:
                    values = dict(fam.compute(replace(feats, wanted=frozenset(n for n in wanted if not n.endswith(FLOOR))),
                                              self.data, self.options))
                    draws = floor_draws(fam, feats, ext, self.data, self.n_ref, self.options, wanted) if fam.needs_floor else {}
                    note = None
                except NotApplicable as e:
                    values, draws, note = {}, {}, str(e)
                details = values.pop("details", {})
                for n, vals in draws.items():
                    values[n + FLOOR] = sum(vals) / len(vals)
                    if len(vals) > 1:
                        result.values[n + SPREAD] = _finite(statistics.stdev(vals))
                for n in fam.names:
                    if n not in self.names:
                        continue
                    result.values[n] = _finite(values.get(n))
                    extra = {"floor_draws": draws[n[: -len(FLOOR)]]} if n.endswith(FLOOR) and draws else {}
                    result.sources[n] = {**base, **details, **extra, **({"not_applicable": note} if note else {})}
            self.seconds[name] += time.perf_counter() - t
        result.seconds = {k: round(v, 4) for k, v in self.seconds.items()}
        return result


def evaluate(names: list[str], samples: Tensor, labels: Tensor | None, data, n_ref: int,
             options: MetricOptions | None = None) -> MetricResult:
    """Compute ``names`` for ``samples`` held in memory; the reference set is ``data.reference(n_ref)``."""
    ev = Evaluation(names, data, n_ref, options)
    step = ev.options.feature_batch_size
    for i in range(0, len(samples), step):
        ev.add(samples[i:i + step], None if labels is None else labels[i:i + step])
    return ev.finish()
