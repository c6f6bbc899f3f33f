"""What the evaluation protocol adds to a suite page (records and run folders only, no torch):

- ``guidance_curves``: FID and IS (or the leading metrics) against the guidance scale, best marked
  (PAPER.md Fig. 5: IS rises with alpha, FID has a sweet spot);
- ``training_curve``: the leading metric over kept checkpoints (``task=evaluate eval.checkpoints=...``);
- ``memorisation_grids``: generated images beside their nearest training images (the paper's Fig. 6);
- ``cost_table``: what evaluation costs: samples/s and feature images/s per process, the measured
  device-minutes of a point and of the whole sweep, and both extrapolated to FID-50K.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.report import load as ld
from bench.report import metric_info as mi
from bench.report.figures import Figure, fmt, subplots, to_uri
from bench.report.tables import Cell, Table

FID50K = 50_000
SHOWN_QUERIES = 4                   # generated images per memorisation grid
SHOWN_NEIGHBOURS = 5


def _guidance_metrics(summary: pd.DataFrame) -> list[str]:
    have = [m for m in ("fid", "is") if m in summary and summary[m].notna().any()]
    if have:
        return have
    first = mi.primary([c for c in summary.columns if c in mi.METRICS and summary[c].notna().any()])
    return [first] if first else []


def coarse_curves(records: dict[str, dict], labels: dict[str, str]) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(label, metric, scales, values) of the coarse stages of coarse-to-fine sweeps (final weights)."""
    out = []
    for rid, record in records.items():
        for s in record.get("sweeps", []):
            if s.get("coarse") and s.get("checkpoint_step") is None:
                g = sorted(s["coarse"], key=float)
                out.append((labels[rid], s["metric"], np.array([float(x) for x in g]),
                            np.array([np.nan if s["coarse"][x] is None else s["coarse"][x] for x in g], float)))
    return out


def guidance_curves(summary: pd.DataFrame, colors: dict, where: str, coarse: list | None = None) -> Figure | None:
    """One line per (label, weights, NFE) evaluated at two or more guidance scales; dashed: the coarse
    stage of a coarse-to-fine search (fewer samples, so higher FID: compare within a line only)."""
    if summary.empty or (summary["guidance"].nunique() < 2 and not coarse):
        return None
    shown = _guidance_metrics(summary)
    lines = [(k, g.sort_values("guidance")) for k, g in summary.groupby(["label", "weights", "nfe"], sort=False)
             if g["guidance"].nunique() >= 2]
    if not shown or not (lines or coarse):
        return None
    fig, axes = subplots(1, len(shown), 3.6, 2.6, left=0.85, gap_w=0.95)
    notes = []
    for ax, m in zip(axes[0], shown):
        for label, metric, x, y in coarse or []:
            if metric == m:
                ax.plot(x, y, ls="--", marker=".", color=colors.get(label), label=f"{label} (coarse stage)")
        for (label, w, nfe), g in lines:
            x, y = g["guidance"].to_numpy(float), g[m].to_numpy(float)
            name = f"{label} ({w}, NFE {int(nfe)})" if len(lines) > 1 else label
            ax.plot(x, y, marker="o", ms=4, color=colors.get(label), label=name)
            ok = np.isfinite(y)
            if ok.any() and mi.direction(m):
                i = int(np.nanargmin(y) if mi.direction(m) == mi.LOWER else np.nanargmax(y))
                ax.scatter([x[i]], [y[i]], s=120, facecolors="none", edgecolors="black", zorder=4)
                notes.append(f"{name}: best {mi.info(m).label} {fmt(y[i])} at guidance {x[i]:g}")
        ax.set(xlabel="guidance scale (drifting: alpha; baselines: CFG w)", ylabel=mi.info(m).label,
               title=f"{mi.info(m).label} against guidance")
        ax.legend(fontsize=7)
    alt = (f"Line plots of {' and '.join(mi.info(m).label for m in shown)} against the guidance scale on {where}. "
           + "; ".join(notes) + ".")
    return Figure(to_uri(fig), alt, "The guidance sweep: each metric against the guidance scale at equal sample "
                  "counts; circled: the best value (the number a paper reports).")


def training_curve(evals_by_run: dict[str, list[dict]], labels: dict[str, str], colors: dict,
                   where: str) -> Figure | None:
    """The leading metric against the checkpoint's training step, one line per (run, point)."""
    rows = [{"run_id": rid, "label": labels[rid], "step": ev["step"],
             "point": (ev["weights"], ev["nfe"], ev["guidance"]), **ev["metrics"]}
            for rid, evs in evals_by_run.items() for ev in evs]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    metric = mi.primary([c for c in df.columns if c in mi.METRICS and df[c].notna().any()])
    if metric is None or df.groupby(["run_id", "point"])["step"].nunique().max() < 2:
        return None
    fig, axes = subplots(1, 1, 5.0, 3.0)
    ax, notes = axes[0, 0], []
    for (rid, point), g in df.groupby(["run_id", "point"], sort=False):
        g = g.sort_values("step")
        ax.plot(g["step"], g[metric], marker="o", ms=4, color=colors.get(labels[rid]),
                label=f"{labels[rid]} ({point[0]}, NFE {point[1]}, g {point[2]:g})")
        notes.append(f"{labels[rid]}: {fmt(g[metric].iloc[0])} at step {int(g['step'].iloc[0])} to "
                     f"{fmt(g[metric].iloc[-1])} at step {int(g['step'].iloc[-1])}")
    ax.set(xlabel="training step of the checkpoint", ylabel=mi.info(metric).label,
           title=f"{mi.info(metric).label} over training")
    ax.legend(fontsize=7)
    alt = f"Line plot of {mi.info(metric).label} against training step on {where}: " + "; ".join(notes) + "."
    return Figure(to_uri(fig), alt, "Quality over training: the kept checkpoints evaluated with task=evaluate "
                  "(train.keep_checkpoints, eval.checkpoints).")


def checkpoint_evals(record: dict) -> list[dict]:
    """Entries of earlier checkpoints, plus the final ones placed at the run's last step."""
    last = record["train"].get("steps")
    out = [{**ev, "step": ev["checkpoint_step"]} for ev in record["evals"] if ev.get("checkpoint_step") is not None]
    points = {(ev["weights"], ev["nfe"], ev["guidance"], ev["n_samples"]) for ev in out}
    out += [{**ev, "step": last} for ev in record["evals"] if ev.get("checkpoint_step") is None and last
            and (ev["weights"], ev["nfe"], ev["guidance"], ev["n_samples"]) in points]
    return out


def memorisation_grids(records: dict[str, dict], results: ld.Results, where: str) -> Figure | None:
    panels = []
    for rid, record in records.items():
        for ev in record["evals"]:
            mem = ev.get("memorisation")
            path = results.run_dir(rid) / mem["file"] if mem else None
            if path is None or not path.exists():
                continue
            with np.load(path, allow_pickle=False) as z:
                panels.append((f"{rid}, {ev['weights']}, NFE {ev['nfe']}, g {ev['guidance']:g}", z["queries"],
                               z["neighbours"], z["similarity"], mem.get("extractor", "")))
    if not panels:
        return None
    rows = sum(min(SHOWN_QUERIES, len(p[1])) for p in panels)
    cols = 1 + min(SHOWN_NEIGHBOURS, panels[0][2].shape[1])
    fig, axes = subplots(rows, cols, 1.2, 1.2, left=0.1, bottom=0.1, gap_w=0.1, gap_h=0.35, top=0.5)
    r, notes = 0, []
    for title, q, nb, sim, ext in panels:
        for i in range(min(SHOWN_QUERIES, len(q))):
            cells = [(q[i], "generated" if i else title[:40])] + [(nb[i, j], f"{sim[i, j]:.3f}")
                                                                   for j in range(cols - 1)]
            for ax, (img, text) in zip(axes[r], cells):
                ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None, interpolation="nearest")
                ax.set_title(text, fontsize=6)
                ax.set(xticks=[], yticks=[])
                ax.grid(False)
            r += 1
        notes.append(f"{title}: top-1 {ext} cosine similarity {fmt(float(sim[:, 0].mean()))} on average, "
                     f"at most {fmt(float(sim[:, 0].max()))}")
    alt = f"Grids on {where}: each row a generated image, then its nearest training images with cosine " \
          f"similarities. " + "; ".join(notes) + "."
    return Figure(to_uri(fig), alt, "The memorisation check (the paper's Fig. 6): generated images (first column) "
                  "and their nearest training images in the named feature space, cosine similarity above each "
                  "(1 would be a copy).")


def _per_point(ev: dict) -> tuple[float, float] | None:
    t = ev["timing"]
    if t.get("device_minutes") is None:
        return None
    return t["device_minutes"], t["device_minutes"] * FID50K / ev["n_samples"]


def cost_table(records: dict[str, dict], labels: dict[str, str]) -> Table | None:
    rows = []
    for rid, record in records.items():
        evs = [ev for ev in record["evals"] if _per_point(ev) is not None]
        if not evs:
            continue
        t = evs[-1]["timing"]
        feats = "; ".join(f"{k} {fmt(v)}" for k, v in (t.get("feature_images_per_second_per_process") or {}).items())
        measured = sum(_per_point(ev)[0] for ev in evs)
        full = [ev for ev in evs if ev["n_samples"] == max(e["n_samples"] for e in evs)]
        per50k = float(np.mean([_per_point(ev)[1] for ev in full]))
        sweeps = [s for s in record.get("sweeps", []) if s.get("checkpoint_step") is None]
        n_points = max((len(s["values"]) + len(s.get("coarse") or {}) for s in sweeps), default=len(full))
        unit = "GPU" if str(t.get("device", "")).startswith("cuda") else "CPU process"
        rows.append([Cell(labels.get(rid, rid)), Cell(f"{t.get('device')} x {t.get('world_size')}"),
                     Cell(fmt(t.get("samples_per_second_per_process", math.nan))), Cell(feats or "–"),
                     Cell(f"{fmt(measured)} ({len(evs)} points)"), Cell(f"{fmt(per50k)} {unit}-min"),
                     Cell(f"{fmt(per50k * n_points)} {unit}-min ({n_points} points)")])
    if not rows:
        return None
    cols = [("run", ""), ("device x processes", "where the points were evaluated"),
            ("samples / s / process", "sampling (and decoding) throughput of one process"),
            ("feature images / s / process", "per extractor: images through the feature network per second"),
            ("measured device-min", "processes x wall-clock of every recorded point"),
            ("one FID-50K point", "device-minutes of one point scaled to 50,000 samples"),
            ("the whole sweep at 50K", "one FID-50K point x the points of the guidance sweep")]
    return Table("What evaluation costs: per-process throughput and device-minutes (GPU-minutes where the device "
                 "is a GPU), measured and extrapolated linearly to FID-50K.", cols, rows,
                 [False, False, True, False, True, True, True])


def add_to_section(sec, summary: pd.DataFrame, evals: pd.DataFrame, results: ld.Results, colors: dict,
                   where: str) -> None:
    """Append this module's figures and table to a suite page section (``bench.report.sections``)."""
    records = {rid: results.records[rid] for rid in dict.fromkeys(evals["run_id"]) if rid in results.records}
    labels = dict(zip(evals["run_id"], evals["label"]))
    figures = [guidance_curves(summary, colors, where, coarse_curves(records, labels)),
               training_curve({rid: checkpoint_evals(r) for rid, r in records.items()}, labels, colors, where),
               memorisation_grids(records, results, where)]
    sec.figures += [f for f in figures if f is not None]
    cost = cost_table(records, labels)
    if cost is not None:
        sec.tables.append(cost)
