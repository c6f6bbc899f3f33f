"""Metrics: registry, extractors and the built-in metric families (imported here to register them)."""
from bench.metrics import toy  # noqa: F401
from bench.metrics.registry import check_metrics, default_metrics, evaluate, metric_names  # noqa: F401
