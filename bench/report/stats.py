"""Aggregation over training seeds, the Pareto front of quality against sampling time, the winner of a
comparison, and the "what does one step buy" comparison.

Intervals are two-sided 95% Student-t intervals of the mean over seeds, mean +- t(0.975, n-1) s / sqrt(n)
(PROTOCOLS.md: several seeds, show the spread); with one seed there is no interval.

No seed is dropped: a non-finite or missing metric (reverse KL of a seed without a high-quality sample)
and a diverged training run count as collapsed seeds. A point with collapsed seeds gets no mean (a mean
over the survivors would hide them): it reports "k of n seeds collapsed" and the median over all n
seeds, the collapsed ones counted at the metric's worst value (+inf or -inf). A metric whose seeds were
measured with different extractor weights is not averaged at all.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from bench.report import metric_info as mi
from bench.report.load import METRIC_PREFIX, WEIGHTS_PREFIX

POINT_KEYS = ["label", "weights", "nfe", "guidance"]
MEAN_ONLY = ["nfe_measured", "seconds_per_image", "images_per_second", "latency_batch1_seconds", "params",
             "images_seen", "train_wall_seconds", "gpu_hours"]


def t_half_width(values) -> float:
    """Half-width of the 95% t-interval of the mean (NaN for fewer than two finite values)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) < 2:
        return math.nan
    return float(stdtrit(len(v) - 1, 0.975) * v.std(ddof=1) / math.sqrt(len(v)))


def worst(metric: str) -> float:
    """The value a collapsed seed counts as in a median: the far end of the metric's bad side."""
    d = mi.direction(metric)
    return math.inf if d == mi.LOWER else -math.inf if d == mi.HIGHER else math.nan


def _metric_cells(vals: pd.Series, failed: int, metric: str, weights: pd.Series | None) -> dict:
    """mean, half-width, median, seeds and collapsed seeds of one metric at one point."""
    v = np.asarray(vals, dtype=float)
    bad = int((~np.isfinite(v)).sum()) + failed
    every = np.concatenate([np.where(np.isfinite(v), v, worst(metric)), np.full(failed, worst(metric))])
    median = float(np.median(every)) if len(every) and not np.isnan(every).any() else math.nan
    mixed = 0 if weights is None else int(weights.dropna().nunique())
    ok = bad == 0 and mixed <= 1
    return {"": float(v.mean()) if ok else math.nan, " ±": t_half_width(v) if ok else math.nan,
            " n": len(every), " bad": bad, " median": median, " mixed": mixed if mixed > 1 else 0}


def summarize(evals: pd.DataFrame, metrics: list[str], failed: dict[str, list[tuple[str, str]]] | None = None
              ) -> pd.DataFrame:
    """One row per (label, weights, nfe, guidance): seeds, run ids, means, and metric half-widths.

    ``failed``: label -> (seed, run id) of its runs that diverged (and so have no evaluation): collapsed
    seeds at every point of that label."""
    if evals.empty:
        return pd.DataFrame()
    rows = []
    for key, g in evals.groupby(POINT_KEYS, sort=False, dropna=False):
        row = dict(zip(POINT_KEYS, key))
        lost = [f for f in (failed or {}).get(row["label"], []) if f[1] not in set(g["run_id"])]
        row["n_seeds"] = int(g["seed"].nunique()) + len(lost)
        row["runs"] = sorted({(str(s), rid) for s, rid in zip(g["seed"], g["run_id"])} | set(lost))   # (seed, run id)
        row["method"] = ", ".join(sorted(g["method"].dropna().unique()))
        row["device"] = ", ".join(sorted(str(d) for d in g["device"].dropna().unique()))
        row["train_status"] = ", ".join(sorted(str(s) for s in g["train_status"].dropna().unique()))
        for c in MEAN_ONLY:
            row[c] = pd.to_numeric(g[c], errors="coerce").mean() if c in g else math.nan
        for m in metrics:
            col = METRIC_PREFIX + m
            vals = pd.to_numeric(g[col], errors="coerce") if col in g else pd.Series(np.nan, index=g.index)
            weights = g[WEIGHTS_PREFIX + m] if WEIGHTS_PREFIX + m in g else None
            row.update({m + k: v for k, v in _metric_cells(vals, len(lost), m, weights).items()})
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


def separated(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (mean, half-width) intervals do not overlap (no interval: never separated)."""
    if not all(np.isfinite(x) for x in (*a, *b)):
        return False
    return a[0] + a[1] < b[0] - b[1] or b[0] + b[1] < a[0] - a[1]


def winner(summary: pd.DataFrame, metric: str, floor_spread: float = math.nan) -> dict | None:
    """Each label's best point on ``metric`` and the winner among labels: the best one, if its 95%
    interval separates from every other label's best and the gap exceeds twice the data floor's spread
    (PROTOCOLS.md: a difference inside the floor's spread is no difference); else a tie, with the reason.
    Labels whose every point has a collapsed seed rank last ("collapsed"). None without a direction."""
    d = mi.direction(metric)
    if summary.empty or d is None or metric not in summary:
        return None
    sign = 1.0 if d == mi.LOWER else -1.0
    best = []
    for label, g in summary.groupby("label", sort=False):
        ok = g[np.isfinite(g[metric])]
        if ok.empty:
            best.append({"label": label, "collapsed": True, "bad": int(g[metric + " bad"].max()),
                         "n": int(g[metric + " n"].max())})
            continue
        r = ok.loc[(sign * ok[metric]).idxmin()]
        best.append({"label": label, "collapsed": False, "nfe": int(r["nfe"]), "mean": float(r[metric]),
                     "half": float(r[metric + " ±"]), "n": int(r[metric + " n"])})
    ranked = sorted(best, key=lambda b: (b["collapsed"], sign * b.get("mean", 0.0)))
    top, rivals = ranked[0], [b for b in ranked[1:] if not b["collapsed"]]
    out = {"metric": metric, "best": ranked, "winner": None, "tie": [], "reason": ""}
    if top["collapsed"]:
        out["reason"] = "every label has collapsed seeds at every point"
        return out
    if len(ranked) == 1:
        out["reason"] = "only one method is compared here"
        return out
    overlap = [b["label"] for b in rivals if not separated((top["mean"], top["half"]), (b["mean"], b["half"]))]
    close = [b["label"] for b in rivals if np.isfinite(floor_spread) and abs(b["mean"] - top["mean"]) <= 2 * floor_spread]
    if overlap:
        out["tie"], out["reason"] = [top["label"], *overlap], "their 95% intervals overlap (or one has a single seed)"
    elif close:
        out["tie"], out["reason"] = [top["label"], *close], "the difference is inside twice the data floor's spread"
    else:
        out["winner"] = top["label"]
    return out


def chosen_weights(validation: pd.DataFrame, metric: str) -> dict[str, dict[str, float]]:
    """label -> {weights: mean of ``metric`` over its validation points and seeds}, best first: the EMA
    choice rule (every kept EMA evaluated, chosen on the validation split). Empty without a direction."""
    col = METRIC_PREFIX + metric
    if validation.empty or col not in validation or mi.direction(metric) is None:
        return {}
    sign = 1.0 if mi.direction(metric) == mi.LOWER else -1.0
    out = {}
    for label, g in validation.groupby("label", sort=False):
        values = pd.to_numeric(g[col], errors="coerce")
        scores = values.groupby(g["weights"]).agg(lambda v: v.mean(skipna=False))    # a non-finite seed sinks it
        scores = scores.where(np.isfinite(scores), sign * math.inf)
        out[label] = dict(sorted(scores.items(), key=lambda kv: sign * kv[1]))
    return out


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
