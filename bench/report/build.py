"""Assemble the report: ``reports/index.html``, one page per suite, ``runs.html`` (provenance of every
run) and ``published.html`` (the paper's tables beside ours). Pages are rendered from jinja2 templates
and are self-contained: figures are embedded PNG data, styles are inline, nothing is fetched."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import jinja2

from bench import record as rec
from bench import suite_manifest as sm
from bench.report import cost
from bench.report import figures as fg
from bench.report import metric_info as mi
from bench.report import published as pub
from bench.report import sections, tables
from bench.report.busy import load_note
from bench.report.load import OTHER, Results, load
from bench.suite_manifest import choice

TEMPLATES = Path(__file__).parent / "templates"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fg.fmt
    env.filters["json"] = lambda v: json.dumps(v, indent=1, sort_keys=True, default=str)
    return env


def metric_legend(results: Results) -> list[dict]:
    seen = [c.split(":", 1)[1] for c in results.metric_columns]
    return [{"name": m, "label": mi.info(m).label,
             "direction": mi.direction(m) or ("floor (not ranked)" if mi.is_floor(m) else "unknown"),
             "about": mi.info(m).about, "known": mi.is_floor(m) or m in mi.METRICS} for m in mi.ordered(seen)]


def run_view(record: dict, published: list[pub.PublishedTable]) -> dict:
    """What the provenance page shows of one record."""
    cfg = record["config"]
    metrics = mi.ordered({k for ev in record["evals"] for k in ev["metrics"]})
    evals = []
    for ev in sorted(record["evals"], key=lambda e: (e["weights"], e["nfe"], e["guidance"])):
        t = ev["timing"]
        evals.append({"weights": ev["weights"], "nfe": ev["nfe"], "nfe_measured": ev["nfe_measured"],
                      "guidance": ev["guidance"], "n_samples": ev["n_samples"], "seed": ev.get("seed"),
                      "metrics": [ev["metrics"].get(m) for m in metrics],
                      "ms": (t.get("seconds_per_image") or float("nan")) * 1e3, "device": t.get("device"),
                      "busy": load_note(t, record["env"]),
                      "batch_size": t.get("batch_size")})
    sources = {}
    for ev in record["evals"]:
        for m, src in (ev.get("metric_sources") or {}).items():
            sources.setdefault(m, src)
    return {"id": record["run_id"], "method": choice(cfg, "method"), "data": choice(cfg, "data"),
            "model": choice(cfg, "model"), "seed": cfg.get("seed"), "tag": cfg.get("tag"),
            "git_sha": record.get("git_sha"), "git_dirty": record.get("git_dirty"), "created": record.get("created"),
            "updated": record.get("updated"), "train": record["train"], "env": record["env"], "params": record["params"],
            "metrics": metrics, "evals": evals, "sources": sources, "config": cfg,
            "paper": pub.matches_for(cfg, published)}


def published_view(published: list[pub.PublishedTable], results: Results) -> list[dict]:
    out = []
    for t in published:
        extra = {}
        for i, cond in enumerate(t.matches):
            extra[i] = [(rid, tables.run_href(rid)) for rid, r in sorted(results.records.items())
                        if pub.satisfies(r["config"], cond)]
        caption = f"{t.table}: {t.title} ({t.setting}); source: results/published/{t.file}"
        out.append({"id": pub.Path(t.file).stem, "title": f"{t.table}: {t.title}", "setting": t.setting,
                    "table": tables.frame_table(t.frame, caption, extra),
                    "n_matched": sum(bool(v) for v in extra.values())})
    return out


def default_out(results_dir: Path) -> Path:
    """``reports/`` beside the results folder: ``results`` -> ``./reports``, ``/x/results`` -> ``/x/reports``."""
    return Path(results_dir).resolve().parent / "reports"


def build_report(results_dir: Path = Path("results"), out_dir: Path | None = None,
                 published_dir: Path | None = None, warn: Callable[[str], None] | None = None) -> Path:
    """Write every page into ``out_dir`` (default: ``default_out``) and return the path of ``index.html``.
    The paper's numbers come from ``published_dir``, by default ``<results_dir>/published`` or else the
    checkout's copy. ``warn`` is called with each file that could not be read (the pages name them too)."""
    t0 = time.perf_counter()
    fg.theme()
    results = load(Path(results_dir))
    if published_dir is None:
        own = Path(results_dir) / "published"
        published_dir = own if (own / "index.csv").exists() else pub.PUBLISHED_DIR
    published, pub_problems = pub.load_published(Path(published_dir))
    perf, perf_problems = cost.load_perf(Path(results_dir))
    for problem in (results.problems + pub_problems + perf_problems) if warn is not None else ():
        warn(problem)
    pages = sections.all_suite_pages(results, published)
    started = {p.name for p in pages}
    not_started = {n: d for n, d in sm.available_suites().items() if n not in started}
    sha, dirty = rec.git_state(Path(__file__).parent)
    common = {"generated": rec.now(), "results_dir": str(results_dir), "code_sha": sha, "code_dirty": dirty,
              "pages": pages, "other": OTHER, "problems": results.problems + pub_problems + perf_problems,
              "n_records": len(results.records)}
    env = environment()
    out_dir = Path(out_dir) if out_dir is not None else default_out(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for page in pages:
        _write(out_dir / page.file, env.get_template("suite.html.j2").render(**common, page=page, title=page.name))
    runs = [run_view(r, published) for _, r in sorted(results.records.items())]
    _write(out_dir / "runs.html", env.get_template("runs.html.j2").render(**common, runs=runs, title="runs"))
    _write(out_dir / "published.html", env.get_template("published.html.j2").render(
        **common, tables=published_view(published, results), title="published numbers"))
    index = out_dir / "index.html"
    _write(index, env.get_template("index.html.j2").render(
        **common, title="overview", not_started=not_started, legend=metric_legend(results),
        cost=cost.cost_table(perf),
        seconds=round(time.perf_counter() - t0, 1)))
    return index


def _write(path: Path, html: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
