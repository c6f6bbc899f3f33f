"""The content of a suite page: its progress, and per (claim group, data set) the tables and figures."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench import suite_manifest as sm
from bench.report import cost
from bench.report import figures as fg
from bench.report import figures_eval as fe
from bench.report import figures_quality as fq
from bench.report import figures_runs as fr
from bench.report import load as ld
from bench.report import metric_info as mi
from bench.report import published as pub
from bench.report import stats, tables, tuning
from bench.report.load import METRIC_PREFIX, OTHER, Results

REFERENCE_LABEL = "drifting"
STATE_TEXT = {"missing": "not started", "training": "training unfinished", "evaluating": "evaluation missing",
              "diverged": "diverged", "done": "done"}


@dataclass
class Section:
    id: str
    title: str
    summary: tables.Table | None = None
    glance: tables.Table | None = None
    figures: list[fg.Figure] = field(default_factory=list)
    tables: list[tables.Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    floors: str = ""


@dataclass
class SuitePage:
    name: str
    file: str
    description: str
    command: str = ""
    written: str = ""
    jobs_total: int = 0
    jobs_done: int = 0
    states: dict[str, int] = field(default_factory=dict)
    incomplete: list[dict] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.jobs_done == self.jobs_total


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def progress(page: SuitePage, manifest: dict, results: Results) -> None:
    status = sm.suite_progress(manifest, results.records)
    seen: dict[str, dict] = {}
    for job in manifest["jobs"]:
        st = status[job["run_id"]]
        seen.setdefault(job["run_id"], {"run_id": job["run_id"], "label": job["label"], "state": STATE_TEXT[st.state],
                                        "missing": len(st.missing_points), "points": len(job["points"])})
    page.jobs_total = len(seen)
    page.jobs_done = sum(j["state"] == STATE_TEXT["done"] for j in seen.values())
    page.states = dict(Counter(j["state"] for j in seen.values()))
    page.incomplete = [j for j in seen.values() if j["state"] != STATE_TEXT["done"]]


def _metrics(evals: pd.DataFrame) -> list[str]:
    return [c[len(METRIC_PREFIX):] for c in evals.columns
            if c.startswith(METRIC_PREFIX) and evals[c].notna().any()]


def _paper(evals: pd.DataFrame, results: Results, published: list[pub.PublishedTable]) -> dict[str, list[str]]:
    out = {}
    for label, g in evals.groupby("label", sort=False):
        found = pub.matches_for(results.records[g["run_id"].iloc[0]]["config"], published)
        if found:
            out[label] = [f"{m['table']}: " + ", ".join(f"{k} {v}" for k, v in m["row"].items()
                                                         if k in ("fid", "is", "fid_latent_b2", "fid_pixel_b16"))
                          for m in found]
    return out


def floor_values(summary: pd.DataFrame, metrics: list[str]) -> dict[str, tuple[float, float]]:
    """metric -> (its data floor, the floor's spread over independent draws; NaN with one draw)."""
    out = {}
    for m in metrics:
        if m + mi.FLOOR_SUFFIX in summary:
            spread = summary[m + mi.SPREAD_SUFFIX].mean() if m + mi.SPREAD_SUFFIX in summary else float("nan")
            out[m] = (float(summary[m + mi.FLOOR_SUFFIX].mean()), float(spread))
    return out


def verdict_note(summary: pd.DataFrame, metric: str, floor: tuple[float, float] | None) -> str | None:
    """One line: each label's best on the leading metric, and the winner only where intervals separate."""
    w = stats.winner(summary, metric, floor[1] if floor else float("nan"))
    if w is None:
        return None
    label = mi.info(metric).label
    parts = [f"{b['label']} {b['bad']} of {b['n']} seeds collapsed at every point" if b["collapsed"] else
             f"{b['label']} {fg.fmt(b['mean'])}" + (f" ± {fg.fmt(b['half'])}" if np.isfinite(b["half"]) else
                                                    " (one seed)") + f" at NFE {b['nfe']}" for b in w["best"]]
    head = f"Best {label} of each method (mean ± 95% interval over seeds, at its best NFE): " + "; ".join(parts) + ". "
    if w["winner"]:
        return head + f"Winner: {w['winner']} (its interval separates from every other)."
    if w["tie"]:
        return head + f"No winner: {', '.join(w['tie'])} tie ({w['reason']})."
    return head + f"No winner: {w['reason']}."


def diverged_runs(manifest: dict | None, results: Results, group: str, data: str) -> dict[str, list[tuple[str, str]]]:
    """label -> (seed, run id) of this section's jobs whose training diverged (they have no evaluation)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for job in (manifest or {}).get("jobs", []):
        r = results.records.get(job["run_id"])
        if job["group"] == group and job["data"] == data and r and r["train"].get("status") == "diverged":
            out.setdefault(job["label"], []).append((str(job["seed"]), job["run_id"]))
    return out


def build_section(sid: str, title: str, evals: pd.DataFrame, results: Results,
                  published: list[pub.PublishedTable], colors: dict,
                  failed: dict[str, list[tuple[str, str]]] | None = None) -> Section:
    sec = Section(sid, title)
    metrics = _metrics(evals)
    summary = stats.summarize(evals, metrics, failed)
    data = str(evals["data"].iloc[0])
    floor_of = floor_values(summary, metrics)
    if not metrics:
        sec.notes.append("These runs recorded no metric values (the data's default metric set may be empty "
                         "until the metric stack covers it), so only timings and training cost are shown.")
    paper = _paper(evals, results, published)
    sec.summary = tables.summary_table(summary, metrics, f"{title}: every evaluation point, mean ± half-width of "
                                       f"the 95% interval over seeds; ↓ lower is better, ↑ higher is better, (?) direction unknown; "
                                       "in bold the best value of a column, only where its interval separates from "
                                       "every other row's; a seed without a finite value counts as collapsed, never "
                                       "dropped.", paper or None, floor_of)
    if floor_of:
        sec.floors = ("Data-versus-data floors (independent data samples of the evaluation size against the "
                      "reference, PROTOCOLS.md; the value a perfect generator would reach), mean ± standard "
                      "deviation over the draws; a value within twice that spread of its floor is marked ≈ floor: "
                      + ", ".join(f"{mi.info(m).label} {fg.fmt(f)}" + (f" ± {fg.fmt(s)}" if np.isfinite(s) else "")
                                  for m, (f, s) in floor_of.items()) + ".")
    primary = mi.primary(metrics)
    note = verdict_note(summary, primary, floor_of.get(primary)) if primary else None
    if note:
        sec.notes.append(note)
    if primary and REFERENCE_LABEL in set(evals["label"]):
        rows = stats.one_step_comparison(summary, primary, REFERENCE_LABEL)
        if rows and len(rows) > 1:
            sec.glance = tables.glance_table(rows, primary, REFERENCE_LABEL)
    busy = [n for n in summary["load_note"] if n] if "load_note" in summary else []
    if busy:
        sec.notes.append(f"⚠ {len(busy)} of {len(summary)} evaluation point(s) were timed on a loaded machine "
                         f"({busy[0]}): their sampling times (marked ⚠ in the table and the time figure) are "
                         "slower than the method is; compare them with care.")
    for fig in (fg.quality_vs_nfe(summary, metrics, colors, title), fg.quality_vs_time(summary, primary, colors, title),
                cost.quality_vs_compute(summary, primary, colors, title), fg.mode_bars(summary, colors, data)):
        if fig is not None:
            sec.figures.append(fig)
    if primary and mi.direction(primary) is None:
        sec.notes.append(f"The leading metric '{primary}' has no known direction: no Pareto front.")
    fe.add_to_section(sec, summary, evals, results, colors, title)
    tuned = tuning.trials_figure(results.results_dir, data, colors)     # records alone suffice: no samples needed
    if tuned is not None:
        sec.figures.append(tuned)
    runs = evals.drop_duplicates("run_id")[["run_id", "label", "seed"]].to_dict("records")
    curves, no_log = fr.training_curves(runs, results, colors, title)
    if curves:
        sec.figures.append(curves)
    if no_log:
        sec.notes.append(f"No training log (results/runs/<run_id>/train_log.jsonl) for {len(no_log)} run(s): "
                         + ", ".join(no_log) + ".")
    quality, collapses = fq.quality_curves(runs, results, colors, title, published)
    if quality:
        sec.figures.append(quality)
    if collapses:
        sec.notes.append("Collapse warnings during training: " + "; ".join(collapses) + ".")
    if _is_points(results, evals):
        sample_fig, no_samples = fr.toy_scatter(evals, results, colors, title)
    else:
        sample_fig, no_samples = fr.image_grids(evals, results, title)
    if sample_fig:
        sec.figures.append(sample_fig)
    if no_samples:
        sec.notes.append("Not found in results/runs/<run_id>/ (samples_*.npy or reference.npy), so not drawn: "
                         + "; ".join(no_samples) + ".")
    return sec


def _is_points(results: Results, evals: pd.DataFrame) -> bool:
    """2-D points when the saved samples (or the reference) have two columns."""
    for rid in evals["run_id"].unique():
        ref = ld.reference(results.run_dir(rid))
        if ref is not None:
            return ref.ndim == 2
    r = evals.iloc[0]
    x = ld.samples(results.run_dir(r["run_id"]), r["weights"], int(r["nfe"]), float(r["guidance"]))
    return x is not None and x.ndim == 2


def suite_page(name: str, manifest: dict | None, results: Results, published: list[pub.PublishedTable]) -> SuitePage:
    evals = results.evals[results.evals["suite"] == name]
    if manifest is None:
        page = SuitePage(name, f"suite-{slug(name)}.html", "Runs whose records no suite manifest names, "
                         "grouped by data set; labels are method names (and tags).")
        order = list(dict.fromkeys(zip(evals["group"], evals["data"])))
    else:
        page = SuitePage(name, f"suite-{slug(name)}.html", manifest.get("description", ""),
                         manifest.get("command", ""), manifest.get("written", ""))
        progress(page, manifest, results)
        order = list(dict.fromkeys((j["group"], j["data"]) for j in manifest["jobs"]))
    colors = fg.palette(list(manifest.get("labels", [])) + [j["label"] for j in manifest["jobs"]] if manifest
                        else evals["label"])            # one colour per label on the whole page
    for group, data in order:
        title = f"{group}: {data}" if group else str(data)
        part = evals[(evals["group"] == group) & (evals["data"] == data)]
        valid = results.validation
        valid = valid[(valid["suite"] == name) & (valid["group"] == group) & (valid["data"] == data)] \
            if not valid.empty else valid
        part, choice_note = apply_weights_choice(part, valid)
        if part.empty:
            sec = Section(slug(title), title)
            sec.notes.append("No evaluation of these jobs has been recorded yet.")
        else:
            sec = build_section(slug(title), title, part, results, published, colors,
                                diverged_runs(manifest, results, group, data))
        sec.notes[:0] = declared_differences(manifest) + ([choice_note] if choice_note else [])
        page.sections.append(sec)
    return page


def apply_weights_choice(part: pd.DataFrame, valid: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Keep, per label, the test points of the weights that did best on the validation split."""
    metric = mi.primary([c[len(METRIC_PREFIX):] for c in valid.columns if c.startswith(METRIC_PREFIX)]) \
        if not valid.empty else None
    scores = stats.chosen_weights(valid, metric) if metric else {}
    if not scores:
        return part, None
    keep = part["label"].map(lambda lab: next(iter(scores[lab]), None) if lab in scores else None)
    part = part[keep.isna() | (part["weights"] == keep)]
    shown = "; ".join(f"{lab}: {next(iter(s))} (" + ", ".join(f"{w} {fg.fmt(v)}" for w, v in s.items()) + ")"
                      for lab, s in scores.items())
    return part, (f"Weights chosen on the validation split (every kept EMA evaluated; "
                  f"{mi.info(metric).label} there, mean over points and seeds): {shown}. The tables show the chosen ones.")


def declared_differences(manifest: dict | None) -> list[str]:
    """The differences between compared jobs that the suite declares (printed above its tables)."""
    diffs = (manifest or {}).get("differences") or {}
    return [f"Declared difference between the compared jobs, {key}: {why}" for key, why in diffs.items()]


def all_suite_pages(results: Results, published) -> list[SuitePage]:
    pages = [suite_page(m["suite"], m, results, published) for m in results.manifests]
    if (results.evals["suite"] == OTHER).any():
        pages.append(suite_page(OTHER, None, results, published))
    return pages
