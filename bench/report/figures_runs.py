"""Figures read from run directories: training curves (with the methods' diagnostics, e.g. drifting's
unnormalised drift, PAPER.md section 2.6), 2-D sample scatter plots over the data, image sample grids."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns

from bench.report import load as ld
from bench.report.figures import Figure, count_axis, fmt, log_axis, subplots, to_uri

LOG_COLUMNS = {"step", "images", "lr", "wall_s", "images_per_s"}   # the harness's own columns
MAX_PANELS = 6


def training_curves(runs: list[dict], results: ld.Results, colors: dict, where: str) -> tuple[Figure | None, list[str]]:
    """``runs``: [{run_id, label, seed}]; returns the figure and the run ids whose log is missing."""
    frames, missing = [], []
    for r in runs:
        log = ld.train_log(results.run_dir(r["run_id"]))
        if log is None or "images" not in log:
            missing.append(r["run_id"])
            continue
        frames.append(log.assign(label=r["label"], run_id=r["run_id"]))
    if not frames:
        return None, missing
    df = pd.concat(frames, ignore_index=True)
    keys = ["loss"] + sorted(c for c in df.columns if c not in LOG_COLUMNS | {"loss", "grad_norm", "label", "run_id"}
                             and pd.api.types.is_numeric_dtype(df[c])) + ["grad_norm"]
    keys = [k for k in keys if k in df and df[k].notna().any()][:MAX_PANELS]
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = subplots(rows, cols, 3.5, 2.3, left=0.9, gap_w=1.0)
    for ax, key in zip(axes.flat, keys):
        d = df.dropna(subset=[key])
        sns.lineplot(data=d, x="images", y=key, hue="label", units="run_id", estimator=None, palette=colors,
                     lw=1, ax=ax, legend=key == keys[0])
        if (d[key] > 0).all():
            log_axis(ax, "y")
        count_axis(ax, "x")
        ax.set(xlabel="training images seen", ylabel=key, title=key)
        if key == keys[0]:
            ax.legend(title=None, fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    last = df.sort_values("images").groupby("label", sort=False)["loss"].last()
    alt = (f"Training curves on {where} against images seen, one line per run: {', '.join(keys)}. "
           "Last logged loss: " + "; ".join(f"{lab} {fmt(v)}" for lab, v in last.items()) + ".")
    return Figure(to_uri(fig), alt, "Training curves, one line per seed (log scale where positive). Columns "
                  "beyond loss and gradient norm are the method's own diagnostics; drifting's normalised loss "
                  "stays flat by construction, its unnormalised drift is the signal."), missing


def _shown_points(evals: pd.DataFrame) -> list[tuple[str, str, int, float, str]]:
    """Per label: the first seed's run at its smallest and largest NFE: (label, run_id, nfe, guidance, weights)."""
    out = []
    for label, g in evals.groupby("label", sort=False):
        g = g[g["seed"] == g["seed"].min()].sort_values("nfe")
        for i in sorted({0, len(g) - 1}):
            r = g.iloc[i]
            out.append((label, r["run_id"], int(r["nfe"]), float(r["guidance"]), r["weights"]))
    return out


def toy_scatter(evals: pd.DataFrame, results: ld.Results, colors: dict, where: str) -> tuple[Figure | None, list[str]]:
    points = _shown_points(evals)
    panels, missing = [], []
    for label, rid, nfe, g, w in points:
        x = ld.samples(results.run_dir(rid), w, nfe, g)
        if x is None or x.ndim != 2 or x.shape[1] != 2:
            missing.append(f"{rid} NFE {nfe}")
            continue
        panels.append((label, rid, nfe, x, ld.reference(results.run_dir(rid))))
    if not panels:
        return None, missing
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = subplots(rows, cols, 2.6, 2.6, left=0.15, bottom=0.15, gap_w=0.3, gap_h=0.45)
    outside = []
    no_ref = [p[1] for p in panels if p[4] is None]
    for ax, (label, rid, nfe, x, ref) in zip(axes.flat, panels):
        box = ref if ref is not None else x
        lo, hi = np.quantile(box, 0.001, axis=0), np.quantile(box, 0.999, axis=0)
        pad = 0.15 * (hi - lo).max()
        lo, hi = lo - pad, hi + pad
        if ref is not None:
            ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.75", label="data", rasterized=True)
        ax.scatter(x[:, 0], x[:, 1], s=2, color=colors[label], label="samples", rasterized=True)
        out = int((~((x >= lo) & (x <= hi)).all(axis=1)).sum())
        if out:
            outside.append(f"{label} NFE {nfe}: {out} of {len(x)}")
        ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), aspect="equal", xticks=[], yticks=[],
               title=f"{label}, NFE {nfe}" + (f" ({out} outside)" if out else ""))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if no_ref:
        missing.append("the data backdrop (reference.npy) of " + ", ".join(dict.fromkeys(no_ref)))
    alt = (f"Scatter plots of generated 2-D samples (coloured) over held-out data (grey) on {where}, first seed, "
           f"at each method's smallest and largest NFE: " + ", ".join(f"{p[0]} NFE {p[2]}" for p in panels) + ". "
           + ("Samples outside the view: " + "; ".join(outside) + "." if outside else "All samples are in view."))
    return Figure(to_uri(fig), alt, "Generated samples (colour) over held-out data (grey), first seed."), missing


def _tile(x: np.ndarray, n: int = 8) -> np.ndarray:
    """First n*n images [N, C, H, W] in [-1, 1] as one [n*H, n*W(, 3)] picture in [0, 1]."""
    x = np.clip((x[: n * n] + 1) / 2, 0, 1)
    if len(x) < n * n:
        x = np.concatenate([x, np.ones((n * n - len(x), *x.shape[1:]))])
    x = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=1.0)     # a white line between images
    c, h, w = x.shape[1:]
    grid = x.reshape(n, n, c, h, w).transpose(0, 3, 1, 4, 2).reshape(n * h, n * w, c)
    return grid[..., 0] if c == 1 else grid[..., :3]


def image_grids(evals: pd.DataFrame, results: ld.Results, where: str) -> tuple[Figure | None, list[str]]:
    panels, missing, ref = [], [], None
    for label, rid, nfe, g, w in _shown_points(evals):
        x = ld.samples(results.run_dir(rid), w, nfe, g)
        if x is None or x.ndim != 4:
            missing.append(f"{rid} NFE {nfe}")
            continue
        panels.append((f"{label}, NFE {nfe}", x))
        ref = ref if ref is not None else ld.reference(results.run_dir(rid))
    if not panels:
        return None, missing
    if ref is not None and ref.ndim == 4:
        panels.insert(0, ("data", ref))
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = subplots(rows, cols, 2.4, 2.4, left=0.15, bottom=0.15, gap_w=0.3, gap_h=0.45)
    for ax, (title, x) in zip(axes.flat, panels):
        ax.imshow(_tile(x), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set(title=title, xticks=[], yticks=[])
        ax.grid(False)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    alt = (f"Grids of 64 generated images on {where}, first seed, one grid per method and NFE: "
           + ", ".join(t for t, _ in panels) + ".")
    return Figure(to_uri(fig), alt, "The first 64 samples at each method's smallest and largest NFE, first seed; "
                  "'data': the first 64 images of the reference set."), missing
