"""HTML-ready tables: column headers, row headers, cells with links, tooltips and "best" marks.

The template renders a ``Table`` with ``<th scope="col">`` headers and the first cell of every row as
``<th scope="row">``; numbers are right-aligned. Nothing here formats HTML itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.report import metric_info as mi
from bench.report.figures import fmt
from bench.report.stats import separated


@dataclass
class Cell:
    text: str
    title: str = ""          # tooltip, e.g. the interval's bounds
    href: str = ""
    best: bool = False
    links: list[tuple[str, str]] = field(default_factory=list)   # several (text, href) in one cell
    nowrap: bool = False


@dataclass
class Table:
    caption: str
    columns: list[tuple[str, str]]          # (header text, header tooltip)
    rows: list[list[Cell]]
    numeric: list[bool]


def run_href(run_id: str) -> str:
    return f"runs.html#run-{run_id}"


def metric_cell(r, m: str, floor: tuple[float, float] | None = None) -> Cell:
    """Mean and 95% interval over all seeds; "k of n seeds collapsed" (with the median over all n, the
    collapsed ones counted as the worst value) where a seed has no finite value; "≈ floor" where the mean
    lies within twice the data floor's spread of the floor."""
    mean, half, n, bad, median = r[m], r[m + " ±"], int(r[m + " n"]), int(r[m + " bad"]), r[m + " median"]
    if r[m + " mixed"]:
        return Cell("not averaged", f"the seeds used {int(r[m + ' mixed'])} different extractor weights: "
                                    f"their values are not comparable")
    if bad:
        shown = fmt(median) if np.isfinite(median) else "collapsed"
        return Cell(f"{bad} of {n} seeds collapsed; median {shown}",
                    f"{bad} seed(s) without a finite value (e.g. no high-quality sample) or with diverged training; "
                    f"no mean: the median counts them at the worst value")
    if not np.isfinite(mean):
        return Cell("n/a", "no value in any seed")
    near = floor is not None and np.isfinite(floor[1]) and abs(mean - floor[0]) <= 2 * floor[1]
    mark = " ≈ floor" if near else ""
    note = f"; within twice the spread of the data floor {fmt(floor[0])} ± {fmt(floor[1])}" if near else ""
    if np.isfinite(half):
        shown = "0" if half <= 1e-9 * abs(mean) else fmt(half)        # equal seeds: rounding noise only
        return Cell(f"{fmt(mean)} ± {shown}{mark}",
                    f"95% interval [{fmt(mean - half)}, {fmt(mean + half)}] over {n} seeds, median {fmt(median)}{note}")
    return Cell(fmt(mean) + mark, f"{n} seed(s): no interval{note}")


def summary_table(summary: pd.DataFrame, metrics: list[str], caption: str,
                  paper: dict[str, list[str]] | None = None, floors: dict[str, tuple[float, float]] | None = None) -> Table:
    """One row per (label, weights, NFE, guidance); ``paper``: label -> published numbers of that setting;
    ``floors``: metric -> (data floor, its spread over independent draws)."""
    s = summary
    show_w = s["weights"].nunique() > 1
    show_g = (s["guidance"] != 1.0).any()
    show_gpu = (s["gpu_hours"].fillna(0) > 0).any()
    mets = [m for m in mi.ordered(metrics) if m in s and not mi.is_floor(m)]   # floors: one line under the table
    cols = [("method", "the job label of the suite (a method, or a claim's variant), and a link to the "
                       "provenance of every seed's run")]
    cols += [("weights", "EMA or raw weights")] if show_w else []
    cols += [("guidance", "guidance scale (1 = none)")] if show_g else []
    cols += [("NFE", "requested; the measured network evaluations per image follow in brackets where they "
                     "differ"), ("seeds", "training seeds averaged"), ("params", "network parameters")]
    for m in mets:
        d = mi.direction(m)
        mark = " ↓" if d == mi.LOWER else " ↑" if d == mi.HIGHER else "" if mi.is_floor(m) else " (?)"
        cols.append((mi.info(m).label + mark,
                     f"{m}: {mi.info(m).about}" + (f"; {d} is better" if d else "; direction unknown")))
    cols += [("ms / image", "sampling seconds per image x 1000 at the evaluation batch size; ⚠: measured while "
                            "other processes kept half the machine's cores busy"),
             ("images / s", "sampling throughput"), ("latency ms", "one image at batch 1"),
             ("training", "images seen and wall-clock seconds" + (" and GPU-hours" if show_gpu else ""))]
    cols += [("paper", "the paper's number for this setting (results/published)")] if paper else []
    best = {m: _best_index(s, m) for m in mets}
    rows = []
    for i, r in s.reset_index(drop=True).iterrows():
        row = [Cell(str(r["label"]), links=[(f"s{seed}", run_href(rid)) for seed, rid in r["runs"]])]
        row += [Cell(str(r["weights"]))] if show_w else []
        row += [Cell(f"{r['guidance']:g}")] if show_g else []
        nfe = str(int(r["nfe"]))
        if np.isfinite(r["nfe_measured"]) and abs(r["nfe_measured"] - r["nfe"]) > 1e-9:
            nfe += f" ({fmt(r['nfe_measured'])} measured)"
        row += [Cell(nfe), Cell(str(r["n_seeds"])), Cell(f"{int(r['params']):,}" if np.isfinite(r["params"]) else "n/a")]
        for m in mets:
            c = metric_cell(r, m, (floors or {}).get(m))
            c.best = best[m] == i
            row.append(c)
        busy = r.get("load_note") or ""
        row += [Cell(fmt(r["seconds_per_image"] * 1e3) + (" ⚠" if busy else ""),
                     f"measured on a loaded machine: {busy}" if busy else ""), Cell(fmt(r["images_per_second"])),
                Cell(fmt(r["latency_batch1_seconds"] * 1e3)), _training_cell(r, show_gpu)]
        row += [Cell("; ".join((paper or {}).get(r["label"], [])) or "–")] if paper else []
        rows.append(row)
    numeric = [False] + [True] * (len(cols) - 1)
    if paper:
        numeric[-1] = False
    return Table(caption, cols, rows, numeric)


def _training_cell(r, show_gpu: bool) -> Cell:
    images = r["images_seen"]
    text = (f"{images / 1e6:.3g}M img" if np.isfinite(images) else "n/a") + f", {fmt(r['train_wall_seconds'])} s"
    return Cell(text + (f", {fmt(r['gpu_hours'])} GPU-h" if show_gpu else ""), nowrap=True)


def _best_index(s: pd.DataFrame, m: str) -> int | None:
    """The best row, only where its 95% interval separates from every other row's (else no mark: a tie)."""
    vals = s[m].reset_index(drop=True)
    if mi.direction(m) is None or not vals.notna().any() or len(vals) < 2:
        return None
    i = int(vals.idxmin() if mi.direction(m) == mi.LOWER else vals.idxmax())
    half = s[m + " ±"].reset_index(drop=True)
    others = [j for j in range(len(vals)) if j != i and np.isfinite(vals[j])]
    if all(separated((vals[i], half[i]), (vals[j], half[j])) for j in others):
        return i
    return None


def glance_table(rows: list[dict], metric: str, reference: str) -> Table:
    """The one-step comparison: best value, NFE range, and the NFE where each label reaches the reference."""
    label = mi.info(metric).label
    cols = [("method", ""), ("NFE evaluated", ""), (f"best {label}", f"{mi.direction(metric)} is better"),
            ("at NFE", ""), (f"NFE to reach {reference} at NFE 1", f"smallest NFE with {label} at least as good"),
            ("ms / image there", f"{reference} at NFE 1: {fmt(rows[0]['ref_seconds'] * 1e3) if rows else 'n/a'} ms")]
    out = []
    for r in rows:
        if r["is_reference"]:
            reach, ms = "reference", fmt(r["ref_seconds"] * 1e3)
        elif r["match_nfe"] is None:
            reach, ms = f"not reached (up to NFE {r['nfes'].split('-')[-1]})", "–"
        else:
            reach, ms = str(r["match_nfe"]), fmt(r["match_seconds"] * 1e3)
        out.append([Cell(r["label"]), Cell(r["nfes"]), Cell(fmt(r["best"])), Cell(str(r["best_nfe"])),
                    Cell(reach), Cell(ms)])
    caption = (f"What one step buys: {label} of each method against {reference} at NFE 1 "
               f"({fmt(rows[0]['ref_value']) if rows else 'n/a'}); means over seeds.")
    return Table(caption, cols, out, [False, False, True, True, False, True])


def frame_table(frame: pd.DataFrame, caption: str, extra: dict[int, list[tuple[str, str]]] | None = None) -> Table:
    """A published table as printed, plus an 'ours' column of links where runs share a row's setting."""
    cols = [(str(c), "") for c in frame.columns] + ([("ours", "our runs in this setting")] if extra is not None else [])
    rows = []
    for i, (_, r) in enumerate(frame.iterrows()):
        row = [Cell(str(v) if str(v) != "" else "–") for v in r]
        if extra is not None:
            row.append(Cell("–" if not extra.get(i) else "", links=extra.get(i, [])))
        rows.append(row)
    numeric = [False] + [_numeric(frame[c]) for c in frame.columns[1:]] + ([False] if extra is not None else [])
    return Table(caption, cols, rows, numeric)


def _numeric(col: pd.Series) -> bool:
    return bool(pd.to_numeric(col.replace("", np.nan), errors="coerce").notna().any())
