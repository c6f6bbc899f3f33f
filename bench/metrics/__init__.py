"""Metrics: registry, extractors and the built-in metric families (imported here to register them).

Extractors: ``raw`` (2-D coordinates: bench.metrics.toy), ``inception`` (torch-fidelity's
inception-v3-compat: bench.metrics.inception), ``domain`` (a classifier trained by the suite:
bench.metrics.domain and bench.metrics.classes).
"""
from bench.metrics import classes, inception, toy  # noqa: F401
from bench.metrics.registry import (  # noqa: F401
    Evaluation, MetricOptions, MetricResult, check_metrics, default_metrics, evaluate, metric_names,
)
