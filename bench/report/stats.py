"""Aggregation over training seeds, the Pareto front of quality against sampling time, and the
"what does one step buy" comparison.

Intervals are two-sided 95% Student-t intervals of the mean over seeds, mean +- t(0.975, n-1) s / sqrt(n)
(PROTOCOLS.md: several seeds, show the spread); with one seed there is no interval.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from bench.report import metric_info as mi
from bench.report.load import METRIC_PREFIX

POINT_KEYS = ["label", "weights", "nfe", "guidance"]
MEAN_ONLY = ["nfe_measured", "seconds_per_image", "images_per_second", "latency_batch1_seconds", "params",
             "images_seen", "train_wall_seconds", "gpu_hours"]


def t_half_width(values) -> float:
    """Half-width of the 95% t-interval of the mean (NaN for fewer than two finite values)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) < 2:
        return math.nan
    return float(stdtrit(len(v) - 1, 0.975) * v.std(ddof=1) / math.sqrt(len(v)))


def summarize(evals: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (label, weights, nfe, guidance): seeds, run ids, means, and metric half-widths."""
    if evals.empty:
        return pd.DataFrame()
    rows = []
    for key, g in evals.groupby(POINT_KEYS, sort=False, dropna=False):
        row = dict(zip(POINT_KEYS, key))
        row["n_seeds"] = int(g["seed"].nunique())
        row["runs"] = sorted({(str(s), rid) for s, rid in zip(g["seed"], g["run_id"])})   # (seed, run id)
        row["method"] = ", ".join(sorted(g["method"].dropna().unique()))
        row["device"] = ", ".join(sorted(str(d) for d in g["device"].dropna().unique()))
        row["train_status"] = ", ".join(sorted(str(s) for s in g["train_status"].dropna().unique()))
        for c in MEAN_ONLY:
            row[c] = pd.to_numeric(g[c], errors="coerce").mean() if c in g else math.nan
        for m in metrics:
            col = METRIC_PREFIX + m
            vals = pd.to_numeric(g[col], errors="coerce") if col in g else pd.Series(dtype=float)
            row[m] = vals.mean()
            row[m + " ±"] = t_half_width(vals)
            row[m + " n"] = int(vals.notna().sum())
        row["seconds_per_image ±"] = t_half_width(pd.to_numeric(g["seconds_per_image"], errors="coerce"))
        row["load_note"] = "; ".join(sorted(set(g["load_note"].dropna()))) if "load_note" in g else ""
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["label", "nfe"], kind="stable", key=_label_order(evals))


def _label_order(evals: pd.DataFrame):
    order = {lab: i for i, lab in enumerate(dict.fromkeys(evals["label"]))}

    def key(col: pd.Series) -> pd.Series:
        return col.map(order) if col.name == "label" else col
    return key


def pareto_front(times, values, metric: str) -> np.ndarray:
    """Boolean mask of the points no other point beats on both sampling time (lower) and ``metric``."""
    t, v = np.asarray(times, float), np.asarray(values, float)
    ok = np.isfinite(t) & np.isfinite(v)
    sign = 1.0 if mi.direction(metric) == mi.LOWER else -1.0
    front = np.zeros(len(t), dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (t <= t[i]) & (sign * v <= sign * v[i]) & ((t < t[i]) | (sign * v < sign * v[i]))
        front[i] = not dominated.any()
    return front


def one_step_comparison(summary: pd.DataFrame, metric: str, reference: str = "drifting") -> list[dict]:
    """For every label: its best ``metric`` (and at what NFE), and the smallest NFE at which it is at
    least as good as the one-step ``reference`` label, with the sampling time there.

    Empty when the metric has no direction or no label evaluates the reference at NFE 1."""
    if summary.empty or mi.direction(metric) is None or metric not in summary:
        return []
    ref = summary[(summary["label"] == reference) & (summary["nfe"] == 1)]
    if ref.empty or not np.isfinite(ref[metric].iloc[0]):
        return []
    ref_value, ref_time = float(ref[metric].iloc[0]), float(ref["seconds_per_image"].iloc[0])
    out = []
    for label, g in summary.groupby("label", sort=False):
        g = g[np.isfinite(g[metric])].sort_values("nfe")
        if g.empty:
            continue
        best = g.loc[g[metric].idxmin() if mi.direction(metric) == mi.LOWER else g[metric].idxmax()]
        match = g[[mi.better(metric, v, ref_value) for v in g[metric]]]
        first = match.iloc[0] if not match.empty else None
        out.append({
            "label": label, "best": float(best[metric]), "best_nfe": int(best["nfe"]),
            "nfes": f"{int(g['nfe'].min())}-{int(g['nfe'].max())}" if len(g) > 1 else str(int(g["nfe"].iloc[0])),
            "match_nfe": None if first is None else int(first["nfe"]),
            "match_seconds": None if first is None else float(first["seconds_per_image"]),
            "ref_value": ref_value, "ref_seconds": ref_time, "is_reference": label == reference,
        })
    return out
