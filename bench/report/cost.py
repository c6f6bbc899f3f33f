"""What it costs to reproduce: measured training and sampling speed per recipe, and quality against
training compute (no torch: the perf scripts' JSON and the run records are plain data).

- ``load_perf``: ``<results_dir>/perf/*.json`` written by ``python -m bench.perf.gpu_step`` (kind
  ``gpu_step``) and ``python -m bench.perf.sampling`` (kind ``sampling``); unreadable files are named.
- ``cost_table``: per (recipe, method, device): measured images/s per GPU, MFU, GPU-hours to the recipe's
  full step count at its global batch, sampling GPU-seconds per 50K images (fastest sampler mode, VAE
  decoding included where it was timed), beside the release's stated accelerator count.
- ``quality_vs_compute``: the suite's leading metric against each run's training compute (GPU-hours; on
  CPU runs, wall-clock hours on their cores), next to quality against sampling time.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.report import metric_info as mi
from bench.report.figures import Figure, fmt, log_axis, subplots, to_uri
from bench.report.tables import Cell, Table

SAMPLES = 50_000


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else fmt(v)


def load_perf(results_dir: Path) -> tuple[list[dict], list[str]]:
    perf, problems = [], []
    for path in sorted(Path(results_dir, "perf").glob("*.json")):
        try:
            r = json.loads(path.read_text())
            if r.get("kind") not in ("gpu_step", "sampling"):
                raise ValueError(f"unknown kind {r.get('kind')!r}")
            perf.append({**r, "file": path.name})
        except (OSError, ValueError) as e:
            problems.append(f"{path}: not a perf result ({e})")
    return perf, problems


def _sampling_seconds(r: dict) -> tuple[float | None, str]:
    """GPU-seconds per 50K samples at the fastest mode, decoding included where it was timed."""
    best, how = None, ""
    for mode, t in r.get("modes", {}).items():
        rate = (t.get("throughput_images_per_second") or {}).get("median")
        if not rate:
            continue
        per = 1.0 / rate + (t["decode_seconds"] / r["n"] if t.get("decode_seconds") is not None else 0.0)
        if best is None or per < best:
            best, how = per, f"{mode}, NFE {r['nfe']}, batch {r['batch']}" + (
                ", VAE decode included" if t.get("decode_seconds") is not None else "")
    return (None, "") if best is None else (best * SAMPLES, how)


def cost_table(perf: list[dict]) -> Table | None:
    steps = [r for r in perf if r["kind"] == "gpu_step"]
    if not steps:
        return None
    sampling = {(r.get("recipe") or r["name"], r["method"], r["device"]): r for r in perf if r["kind"] == "sampling"}
    cols = [("recipe", "PAPER.md Table 8 column measured (synthetic data of its shapes)"), ("method", ""),
            ("device", "the GPU (or CPU) the perf script ran on"),
            ("images/s per GPU", "steady-state training images per second of one device (drifting: generated)"),
            ("MFU", "model FLOPs (torch.utils.flop_counter) per second over the table's bf16 peak of this GPU"),
            ("GPU-hours to full", "recipe steps x global batch / images per second, on devices like this one"),
            ("sampling GPU-s / 50K", "seconds of one device to draw 50,000 samples at its fastest measured mode"),
            ("release accelerators", "the official release's stated accelerator count (TPU v6e chips)")]
    rows = []
    for r in sorted(steps, key=lambda r: (str(r.get("recipe")), r["method"])):
        recipe = r.get("recipe") or r["name"]
        sec, how = _sampling_seconds(sampling.get((recipe, r["method"], r["device"]), {}))
        hours = r.get("gpu_hours_to_full")
        rows.append([Cell(recipe), Cell(r["method"]), Cell(r.get("gpu_name") or r["device"]),
                     Cell(_num(r["images_per_second"]), f"{r['images_per_step']} images per step, step "
                          f"{fmt(1e3 * r['step_seconds']['median'])} ms (median of {r['step_seconds']['n']})"),
                     Cell("n/a" if r.get("mfu_table") is None else f"{100 * r['mfu_table']:.1f}%",
                          f"{fmt(r['achieved_tflops'])} TFLOP/s achieved; measured matmul peak "
                          f"{fmt(r['peak_tflops_measured'])} TFLOP/s"),
                     Cell("n/a" if hours is None else _num(hours),
                          "" if hours is None else f"{r['recipe_steps']:,} steps x {r['recipe_global_batch']}"),
                     Cell("not measured" if sec is None else _num(sec), how),
                     Cell(str(r.get("release_accelerators") or "–"))])
    return Table("Cost to reproduce, from results/perf (python -m bench.perf.gpu_step and bench.perf.sampling): "
                 "one device's measured speed on synthetic data of each recipe's shapes; GPU-hours assume that "
                 "speed scales with the number of devices.", cols, rows, [False, False, False, True, True, True,
                                                                         True, True])


def training_hours(summary: pd.DataFrame) -> pd.Series:
    """GPU-hours of each row's training, or wall-clock hours where the run trained on a CPU."""
    gpu = pd.to_numeric(summary.get("gpu_hours"), errors="coerce")
    wall = pd.to_numeric(summary.get("train_wall_seconds"), errors="coerce") / 3600
    return gpu.where(gpu > 0, wall)


def quality_vs_compute(summary: pd.DataFrame, metric: str | None, colors: dict, where: str) -> Figure | None:
    if metric is None or summary.empty or metric not in summary:
        return None
    d = summary.assign(hours=training_hours(summary)).dropna(subset=[metric, "hours"])
    d = d[d["hours"] > 0]
    if d.empty:
        return None
    cpu = bool((pd.to_numeric(d.get("gpu_hours"), errors="coerce").fillna(0) <= 0).any())
    fig, axes = subplots(1, 1, 5.4, 3.4)
    ax = axes[0, 0]
    for label, g in d.groupby("label", sort=False):
        ax.scatter(g["hours"], g[metric], s=40, color=colors[label], label=label, zorder=3)
        for _, r in g.iterrows():
            ax.annotate(f"{int(r['nfe'])}", (r["hours"], r[metric]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    log_axis(ax, "x")
    unit = "training wall-clock hours (CPU)" if cpu else "training GPU-hours"
    ax.set(xlabel=f"{unit}, log scale", ylabel=mi.info(metric).label, title=mi.info(metric).label)
    ax.legend(fontsize=8)
    alt = (f"Scatter plot of {mi.info(metric).label} against {unit} on {where}, one point per method and NFE: "
           + "; ".join(f"{r['label']} NFE {int(r['nfe'])} {fmt(r['hours'])} h, {fmt(r[metric])}" for _, r in d.iterrows()))
    return Figure(to_uri(fig), alt, f"Quality against training compute ({unit}; the number beside a point is the "
                  "sampling NFE): what each point cost to train, beside what it costs to sample.")
