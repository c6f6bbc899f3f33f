"""Quality figures (seaborn on matplotlib's Agg backend), embedded in the page as base64 PNG.

Every figure comes with an alt text that says what it shows and its main numbers, so the page reads
without the picture. Means and 95% t-intervals over seeds come from ``stats.summarize``.
"""
from __future__ import annotations

import base64
import io
import math
import warnings
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import (FixedFormatter, FixedLocator, FuncFormatter, LogLocator, MaxNLocator,  # noqa: E402
                               NullLocator)

from bench.report import metric_info as mi  # noqa: E402
from bench.report.stats import pareto_front  # noqa: E402

# Number of modes of the data sets with a mode-coverage metric (bench/data; a test keeps them in step).
MODE_COUNTS = {"ring8": 8, "grid25": 25, "bimodal": 2, "digits": 10, "stacked_digits": 1000}
MODE_METRICS = ("modes", "stacked_modes", "classes_covered")      # counts of modes found, by data kind


@dataclass
class Figure:
    uri: str          # data:image/png;base64,...
    alt: str
    caption: str


def theme() -> None:
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def palette(labels) -> dict[str, tuple]:
    """Colour-blind-safe colours in an order that keeps the first four far apart."""
    labels = list(dict.fromkeys(labels))
    base = sns.color_palette("colorblind", 10)
    colors = [base[i] for i in (0, 1, 2, 4, 3, 5, 6, 7, 8, 9)]
    return {lab: colors[i % 10] for i, lab in enumerate(labels)}


class LayoutWarning(UserWarning):
    """A figure whose tick labels still touch after thinning (the tests turn it into an error)."""


def _drawn_labels(axis) -> list:
    """The major tick labels drawn on ``axis``: visible, non-empty, inside the view limits."""
    lo, hi = sorted(axis.get_view_interval())
    tol = 1e-9 * max(abs(lo), abs(hi), 1e-300)
    labels = [tick.label1 for tick in axis.get_major_ticks() if lo - tol <= tick.get_loc() <= hi + tol]
    return [t for t in labels if t.get_visible() and t.get_text().strip()]


def _crowded(labels, renderer, horizontal: bool) -> bool:
    """Whether neighbouring labels run together: less than 1 em between them side by side (numbers
    closer than a digit's width read as one), 0.3 em one above the other."""
    boxes = sorted(((t.get_window_extent(renderer), t.get_fontsize() * renderer.dpi / 72) for t in labels),
                   key=lambda b: b[0].x0 if horizontal else b[0].y0)
    for (a, em), (b, _) in zip(boxes, boxes[1:]):
        gap = b.x0 - a.x1 if horizontal else b.y0 - a.y1
        if gap < (1.0 if horizontal else 0.3) * em:
            return True
    return False


def tick_overlaps(fig) -> list[str]:
    """The axes of ``fig`` (as drawn last) whose neighbouring tick labels touch or overlap: 'title: x'."""
    renderer = fig.canvas.get_renderer()
    return [f"{ax.get_title() or '(untitled)'}: {name}" for ax in fig.axes if ax.get_visible()
            for name, axis in (("x", ax.xaxis), ("y", ax.yaxis))
            if _crowded(_drawn_labels(axis), renderer, name == "x")]


def _thin_ticks(fig) -> None:
    """Show every 2nd, 3rd, ... numeric tick label of a crowded axis until its labels have room."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for horizontal, axis in ((True, ax.xaxis), (False, ax.yaxis)):
            labels = _drawn_labels(axis)
            if not all(_numeric(t.get_text()) for t in labels):
                continue                            # category names: hiding some would lose them
            for k in range(2, len(labels) + 1):
                if not _crowded([t for t in labels if t.get_visible()], renderer, horizontal):
                    break
                for i, t in enumerate(labels):
                    t.set_visible(i % k == 0)


def _numeric(text: str) -> bool:
    try:
        float(text.replace("\u2212", "-").rstrip("kMG") or "x")
        return True
    except ValueError:
        return False


def to_uri(fig) -> str:
    """The figure as an embedded PNG, after thinning tick labels that would overlap (``LayoutWarning``
    names the axes where that was not enough)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    if tick_overlaps(fig):                          # rare: only then is the figure drawn a second time
        _thin_ticks(fig)
        crowded = tick_overlaps(fig)
        if crowded:
            warnings.warn(f"figure tick labels overlap: {'; '.join(crowded)}", LayoutWarning, stacklevel=2)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def count_axis(ax, which: str = "x") -> None:
    """Counts (images seen, steps) as 0, 250k, 1.5M instead of 250000 or an offset '1e6'."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]))
    axis.set_major_formatter(FuncFormatter(lambda v, _: count_text(v)))


def count_text(v: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def subplots(rows: int, cols: int, cell_w: float, cell_h: float, left: float = 0.75, bottom: float = 0.6,
             top: float = 0.4, right: float = 0.2, gap_w: float = 0.8, gap_h: float = 0.8):
    """A grid of axes with fixed margins in inches. A layout engine (tight or constrained) would
    measure every text twice and more than double the drawing time of the report."""
    width, height = cols * cell_w + left + right + (cols - 1) * gap_w, rows * cell_h + bottom + top + (rows - 1) * gap_h
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=gap_w / cell_w, hspace=gap_h / cell_h)
    for ax in axes.flat:                          # fewer tick labels: text is what drawing time goes to
        ax.yaxis.set_major_locator(MaxNLocator(5))
    return fig, axes


def log_axis(ax, which: str, ticks=None) -> None:
    """Log scale without minor ticks (their labels cost most of the drawing time), optionally with
    plain major ticks at ``ticks`` (e.g. the NFEs evaluated)."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=2 if ticks is not None else 10)
    axis.set_minor_locator(NullLocator())
    if ticks is None:                             # 1-2-5 ticks over short ranges, decades over long ones
        lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
        wide = lo > 0 and np.log10(hi / lo) > 2.5
        axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0), numticks=8))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ticks = sorted(set(ticks))
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FixedFormatter([f"{t:g}" for t in ticks]))


def fmt(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _title(metric: str) -> str:
    d = mi.direction(metric)
    return f"{mi.info(metric).label} ({d} is better)" if d else f"{mi.info(metric).label} (direction unknown)"


def plotted_metrics(summary: pd.DataFrame, metrics: list[str], limit: int = 4) -> list[str]:
    have = [m for m in mi.ordered(metrics) if not mi.is_floor(m) and summary[m].notna().any()]
    first = mi.primary(have)
    return ([first] if first else []) + [m for m in have if m != first][: limit - (1 if first else 0)]


def _band(ax, x, y, h, color) -> None:
    ok = np.isfinite(h)
    if ok.sum() >= 2:
        ax.fill_between(np.asarray(x)[ok], (y - h)[ok], (y + h)[ok], color=color, alpha=0.2, lw=0)
    elif ok.any():
        ax.errorbar(np.asarray(x)[ok], y[ok], yerr=h[ok], color=color, capsize=3, lw=1)


def series(summary: pd.DataFrame):
    """((label, name), rows) per line to draw: one per label, or per (label, weights, guidance) where a
    label was evaluated with several weights or guidance scales (those get their own line style)."""
    out = []
    for label, g in summary.groupby("label", sort=False):
        parts = g.groupby(["weights", "guidance"], sort=False)
        for i, ((w, gd), part) in enumerate(parts):
            part = part.copy()
            part.attrs["ls"] = ("-", "--", ":", "-.")[i % 4]
            extra = ", ".join(([str(w)] if g["weights"].nunique() > 1 else []) +
                              ([f"guidance {gd:g}"] if g["guidance"].nunique() > 1 else []))
            out.append(((label, f"{label} ({extra})" if extra else label), part))
    return out


def quality_vs_nfe(summary: pd.DataFrame, metrics: list[str], colors: dict, where: str) -> Figure | None:
    shown = plotted_metrics(summary, metrics)
    if not shown:
        return None
    d = summary.assign(x=summary["nfe_measured"].fillna(summary["nfe"]))    # in label order, then NFE
    fig, axes = subplots(1, len(shown), 3.5, 2.6, left=0.85, gap_w=0.95)
    for i, (ax, m) in enumerate(zip(axes[0], shown)):
        for (label, name), g in series(d):            # aggregated already: plain lines are enough
            x, y = g["x"].to_numpy(float), g[m].to_numpy(float)
            ax.plot(x, y, marker="o", ms=4, color=colors[label], label=name, ls=g.attrs["ls"])
            _band(ax, x, y, g[m + " ±"].to_numpy(float), colors[label])
        floor = m + mi.FLOOR_SUFFIX
        if floor in d and d[floor].notna().any():
            ax.axhline(d[floor].mean(), ls="--", color="0.4", lw=1, label="data floor")
        if i == 0:
            ax.legend(fontsize=7)
        log_axis(ax, "x", d["x"].to_numpy(float))
        ax.set(xlabel="NFE (measured, log scale)", ylabel=mi.info(m).label, title=_title(m))
    notes = []
    for (_, name), g in series(d):
        x, y = g["x"].to_numpy(float), g[shown[0]].to_numpy(float)
        notes.append(f"{name} {fmt(y[0])} at NFE {x[0]:g}" + (f" to {fmt(y[-1])} at NFE {x[-1]:g}" if len(x) > 1 else ""))
    alt = (f"Line plots of quality against NFE on {where}, one panel per metric ({', '.join(map(_title, shown))}), "
           f"one line per method with a band for the 95% interval over seeds. {_title(shown[0])}: "
           + "; ".join(notes) + ".")
    return Figure(to_uri(fig), alt, "Quality against the number of function evaluations (log axis); bands: "
                  "95% interval over seeds; dashed: the data-versus-data floor where the metric has one.")


def quality_vs_time(summary: pd.DataFrame, metric: str, colors: dict, where: str) -> Figure | None:
    if metric is None or summary[metric].notna().sum() == 0 or summary["seconds_per_image"].notna().sum() == 0:
        return None
    d = summary.dropna(subset=[metric, "seconds_per_image"]).copy()
    d["ms"] = d["seconds_per_image"] * 1e3
    fig, axes = subplots(1, 1, 5.4, 3.4)
    ax = axes[0, 0]
    for label, g in d.groupby("label", sort=False):       # one point per aggregated row: plain scatter
        ax.scatter(g["ms"], g[metric], s=40, color=colors[label], label=label, zorder=3)
    ax.errorbar(d["ms"], d[metric], yerr=d[metric + " ±"].fillna(0), fmt="none", ecolor="0.6", lw=1, zorder=2)
    busy = d["load_note"].astype(bool) if "load_note" in d else pd.Series(False, index=d.index)
    if busy.any():                                 # timed on a loaded machine: a warning ring around the point
        ax.scatter(d.loc[busy, "ms"], d.loc[busy, metric], s=110, marker="o", facecolors="none",
                   edgecolors="#c77700", linewidths=1.5, linestyle="--", zorder=5, label="timed on a loaded machine")
    several = d["guidance"].nunique() > 1
    for _, r in d.iterrows():
        ax.annotate(f"{int(r['nfe'])}" + (f", g{r['guidance']:g}" if several else ""), (r["ms"], r[metric]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    alt = f"Scatter plot of {_title(metric)} against sampling milliseconds per image on {where} (log axis), " \
          f"each point a method at one NFE (number beside it)."
    if mi.direction(metric):
        front = d[pareto_front(d["ms"], d[metric], metric)].sort_values("ms")
        ax.step(front["ms"], front[metric], where="post", color="black", lw=1.2, zorder=1, label="Pareto front")
        ax.scatter(front["ms"], front[metric], s=160, facecolors="none", edgecolors="black", zorder=4)
        alt += " Pareto front (no other point is both faster and better): " + "; ".join(
            f"{r['label']} NFE {int(r['nfe'])} ({fmt(r['ms'])} ms, {fmt(r[metric])})" for _, r in front.iterrows()) + "."
    else:
        alt += " The metric has no known direction, so no Pareto front is drawn."
    log_axis(ax, "x")
    ax.set(xlabel="sampling time per image (ms, log scale)", ylabel=mi.info(metric).label,
           title=_title(metric) + ("\n⚠ some timings from a loaded machine" if busy.any() else ""))
    ax.legend(fontsize=8)
    loaded = (f" Dashed orange rings: {int(busy.sum())} point(s) timed on a loaded machine, slower than the method "
              "is." if busy.any() else "")
    if busy.any():
        alt += f" {int(busy.sum())} of {len(d)} points were timed on a loaded machine."
    return Figure(to_uri(fig), alt, "Quality against sampling time per image (batch throughput); circled points "
                  "and the black line: the Pareto front; numbers: NFE; error bars: 95% interval over seeds." + loaded)


def mode_bars(summary: pd.DataFrame, colors: dict, data: str) -> Figure | None:
    mode = next((m for m in MODE_METRICS if m in summary and summary[m].notna().any()), None)
    if mode is None:
        return None
    shown = [mode] + (["hq_frac"] if mode == "modes" and "hq_frac" in summary and summary["hq_frac"].notna().any()
                      else [])
    rows = []
    for label, g in summary.groupby("label", sort=False):
        g = g.dropna(subset=[mode]).sort_values("nfe")
        rows += [r for _, r in g.iloc[sorted({0, len(g) - 1})].iterrows()] if len(g) else []
    d = pd.DataFrame(rows)
    names = [f"{r['label']}\nNFE {int(r['nfe'])}" for _, r in d.iterrows()]
    fig, axes = subplots(1, len(shown), max(3.6, 0.75 * len(d)), 2.6, bottom=0.75)
    for ax, m in zip(axes[0], shown):
        ax.bar(range(len(d)), d[m].to_numpy(float), color=[colors[lab] for lab in d["label"]], width=0.7)
        ax.set_xticks(range(len(d)), names)
        ax.errorbar(range(len(d)), d[m], yerr=d[m + " ±"].fillna(0), fmt="none", ecolor="black", capsize=3)
        total = MODE_COUNTS.get(data) if m == mode else 1.0
        if total:
            ax.axhline(total, ls="--", color="0.3", lw=1)
            ax.text(len(d) - 0.5, total, f"all {total:g}" if m == mode else "all samples", ha="right",
                    va="bottom", fontsize=7)
        ax.set(ylabel=mi.info(m).label, title=_title(m))
        ax.tick_params(axis="x", labelsize=8)
    total = MODE_COUNTS.get(data)
    alt = f"Bar chart of {mi.info(mode).label} on {data}" + (f" out of {total}" if total else "") + ": " + "; ".join(
        f"{r['label']} at NFE {int(r['nfe'])}: {fmt(r[mode])}" + (f" (HQ fraction {fmt(r['hq_frac'])})"
                                                                  if "hq_frac" in shown else "")
        for _, r in d.iterrows()) + "."
    return Figure(to_uri(fig), alt, "Mode coverage at each method's smallest and largest NFE: modes captured "
                  "(dashed: all modes) beside the high-quality fraction, which alone can hide a collapse; "
                  "error bars: 95% interval over seeds.")


def no_figure_reason(what: str, why: str) -> str:
    return f"No {what}: {why}."


def finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))
