"""Quality during training (``eval_log.jsonl``, written by ``bench/train_quality.py``): one panel per
checked metric against training images, one line per run, collapse warnings marked, and the published
trajectory (``results/published/release_ablation_trajectory.csv``) beside runs in its setting."""
from __future__ import annotations

import math

import pandas as pd
import seaborn as sns

from bench.report import load as ld
from bench.report import metric_info as mi
from bench.report import published as pub
from bench.report.figures import Figure, fmt, log_axis, subplots, to_uri

COUNTS = ("modes", "classes_covered", "stacked_modes", "hq_frac")     # drawn on a linear axis
ROW_COLUMNS = {"step", "images", "weights", "nfe", "guidance", "n_samples", "collapse", "seconds"}


def _published_points(runs: list[dict], results: ld.Results, published) -> list[tuple[str, pd.DataFrame]]:
    """Per published trajectory matching one of the runs: its points with the x axis in that run's images."""
    out, seen = [], set()
    for r in runs:
        cfg = results.records[r["run_id"]]["config"]
        for table, rows in pub.trajectories_for(cfg, published):
            if table.file in seen:
                continue
            seen.add(table.file)
            batch = float(cfg.get("train", {}).get("batch_size", 1))
            pts = rows.assign(images=pd.to_numeric(rows["step"]) * batch, fid=pd.to_numeric(rows["fid"]))
            out.append((table.table, pts))
    return out


def quality_curves(runs: list[dict], results: ld.Results, colors: dict, where: str,
                   published: list) -> tuple[Figure | None, list[str]]:
    """``runs``: [{run_id, label, seed}]; the figure and a note per run whose checks warned of collapse."""
    frames = []
    for r in runs:
        log = ld.eval_log(results.run_dir(r["run_id"]))
        if log is not None and "images" in log:
            frames.append(log.assign(label=r["label"], run_id=r["run_id"]))
    if not frames:
        return None, []
    df = pd.concat(frames, ignore_index=True)
    keys = mi.ordered([c for c in df.columns if c not in ROW_COLUMNS | {"label", "run_id"}
                       and pd.api.types.is_numeric_dtype(df[c]) and df[c].notna().any()])
    if not keys:
        return None, []
    trajectories = _published_points(runs, results, published)
    cols = min(3, len(keys))
    fig, axes = subplots(math.ceil(len(keys) / cols), cols, 3.5, 2.3, left=0.9, gap_w=1.0)
    warned = df[df["collapse"].notna()] if "collapse" in df else df.iloc[:0]
    for ax, key in zip(axes.flat, keys):
        d = df.dropna(subset=[key])
        sns.lineplot(data=d, x="images", y=key, hue="label", units="run_id", estimator=None, palette=colors,
                     lw=1, marker="o", markersize=3, ax=ax, legend=key == keys[0])
        w = warned.dropna(subset=[key])
        if len(w):
            ax.scatter(w["images"], w[key], marker="x", color="crimson", s=25, zorder=5, label="collapse warning")
        if key == "fid":
            for name, pts in trajectories:
                ax.plot(pts["images"], pts["fid"], "k--", marker="s", ms=3, lw=1, label=f"{name} (FID-50K)")
        if key not in COUNTS and (d[key] > 0).all():
            log_axis(ax, "y")
        ax.set(xlabel="training images seen", ylabel=key, title=mi.info(key).label)
        if key == keys[0] or (key == "fid" and trajectories):
            ax.legend(title=None, fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    last = df.sort_values("images").groupby("label", sort=False).last()
    alt = (f"Quality checks during training on {where}, against images seen, one line per run: "
           + ", ".join(keys) + ". Last check: " + "; ".join(
               f"{lab} " + ", ".join(f"{k} {fmt(row[k])}" for k in keys if pd.notna(row.get(k))) for lab, row in last.iterrows())
           + (f". {len(warned)} check(s) warned of collapse (crosses)." if len(warned) else ". No collapse warning."))
    n = int(df["n_samples"].iloc[0]) if "n_samples" in df else 0
    caption = (f"Quality during training: {n} samples per check with the run's first evaluated weights "
               "(bench/train_quality.py); crosses: collapse warnings (modes or classes below the threshold)."
               + (" Dashed: the release's ablation FID-50K at best CFG; ours uses few samples, so it is biased "
                  "upward and comparable only in shape." if trajectories else ""))
    notes = []
    for rid, g in df.groupby("run_id", sort=False):
        flagged = g["collapse"].notna() if "collapse" in g else pd.Series(False, index=g.index)
        if flagged.any():
            last = g.sort_values("images").iloc[-1]
            notes.append(f"{rid}: {int(flagged.sum())} of {len(g)} checks, " + (
                f"the last one too ({str(last['collapse']).split(': ', 1)[-1]})" if pd.notna(last["collapse"])
                else f"not the last one (first: {g[flagged]['collapse'].iloc[0].split(': ', 1)[-1]})"))
    return Figure(to_uri(fig), alt, caption), notes
