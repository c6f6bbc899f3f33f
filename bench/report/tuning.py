"""The tuning studies behind a comparison (``python -m bench.tune``): every trial's objective per method.

Reads ``<results>/tune/<method>_<data>/study.json`` (``bench.tune_study``; no optuna, no torch), falling
back to the checkout's ``results/tune`` for a results folder inside the checkout's ``results/`` that has
none (measured suites keep their records in ``results/measured/...``). One figure per data set: a dot per
counted trial (not a repeat, not beyond the budget) on the validation split, the chosen trial ringed, the
number of failed (diverged) trials beside each method.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.report import figures as fg

CHECKOUT_TUNE = Path(__file__).resolve().parents[2] / "results" / "tune"


def studies(results_dir: Path, data: str) -> list[dict]:
    """The readable studies of ``data``, in the order of their method names."""
    out = []
    own = Path(results_dir).resolve()
    inside = CHECKOUT_TUNE.parent == own or CHECKOUT_TUNE.parent in own.parents     # e.g. results/measured/...
    for root in (Path(results_dir) / "tune", *([CHECKOUT_TUNE] if inside else [])):
        for path in sorted(root.glob(f"*_{data}/study.json")):
            try:
                s = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if s.get("data") == data and s.get("trials"):
                out.append(s)
        if out:
            return out
    return out


def trials_figure(results_dir: Path, data: str, colors: dict) -> fg.Figure | None:
    found = studies(results_dir, data)
    if not found:
        return None
    metric = found[0]["objective"]["metric"]
    fig, axes = fg.subplots(1, 1, 1.2 * len(found) + 1.5, 2.8, left=0.9, bottom=0.9)
    ax = axes[0, 0]
    notes, names = [], []
    for i, s in enumerate(found):
        counted = [t for t in s["trials"] if t.get("counted")]        # bench.tune_study.export marks them
        done = [t for t in counted if t["state"] == "COMPLETE" and t.get("value") is not None]
        failed = sum(t["state"] == "FAIL" for t in counted)
        vals = np.array([t["value"] for t in done], dtype=float)
        jitter = np.linspace(-0.18, 0.18, len(vals)) if len(vals) > 1 else np.zeros(len(vals))
        color = colors.get(s["method"], "0.3")
        ax.scatter(i + jitter, vals, s=14, color=color, alpha=0.8)
        ax.scatter([i], [s["best"]["value"]], s=90, facecolors="none", edgecolors="k", lw=1.2)
        names.append(s["method"] + (f"\n({failed} failed)" if failed else ""))
        notes.append(f"{s['method']}: {len(done)} trials, best {fg.fmt(s['best']['value'])}, median "
                     f"{fg.fmt(float(np.median(vals))) if len(vals) else 'n/a'}, {failed} failed")
    ax.set_xticks(range(len(found)), names)
    ax.set(ylabel=f"objective: log10 {metric} (validation)", title=f"Tuning trials on {data} (lower is better)")
    trials = {s["budget"]["trials"] for s in found}
    alt = (f"Dot plot of the objective (log10 {metric}) on the validation split of every tuning trial on {data}, one column per "
           f"method, the chosen trial ringed. " + "; ".join(notes) + ".")
    return fg.Figure(fg.to_uri(fig), alt, f"Equal-budget tuning (python -m bench.tune; {'/'.join(map(str, sorted(trials)))} "
                     f"trials per method, the same training budget each): {found[0]['objective'].get('reduce', metric)} on the "
                     f"validation split over the method's tuning NFE, best kept weights; ringed: the preset the suite runs. Studies: "
                     f"results/tune/<method>_{data}/study.json.")
