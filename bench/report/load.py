"""Read run records, suite manifests and run artefacts into pandas, without torch.

``load(results_dir)`` gives a ``Results``: one row per (suite job, evaluation point) in ``evals`` (runs
outside any suite form the pseudo-suite ``OTHER``, labelled by method and tag), the points of jobs on the
validation split apart in ``validation``, every readable record by run id, every manifest, and a list of
what could not be read (corrupted records and manifests by path).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import artifacts
from bench import record as rec
from bench import suite_manifest as sm
from bench.report.busy import load_note
from bench.suite_manifest import choice

OTHER = "other-runs"            # page of the records that no suite manifest names
METRIC_PREFIX = "metric:"
WEIGHTS_PREFIX = "weights:"     # the extractor weights hash behind a metric value


def metric_value(v) -> float:
    """A recorded metric as a float: missing (None) is NaN; non-finite values stay non-finite."""
    if v is None:
        return float("nan")
    if isinstance(v, dict):                 # an encoded non-finite value, e.g. {"nonfinite": "inf"}
        v = next(iter(v.values()), None)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


@dataclass
class Results:
    results_dir: Path
    evals: pd.DataFrame
    records: dict[str, dict]
    manifests: list[dict]
    problems: list[str] = field(default_factory=list)
    validation: pd.DataFrame = field(default_factory=pd.DataFrame)   # points on the validation split (suites
                                                                     # with choose_weights), for the EMA choice

    @property
    def metric_columns(self) -> list[str]:
        return [c for c in self.evals.columns if c.startswith(METRIC_PREFIX)]

    def run_dir(self, run_id: str) -> Path:
        return self.results_dir / "runs" / run_id


def _eval_rows(record: dict) -> list[dict]:
    cfg, train, timing_keys = record["config"], record["train"], ("seconds_per_image", "images_per_second",
                                                                 "latency_batch1_seconds", "batch_size", "device")
    base = {
        "run_id": record["run_id"], "method": choice(cfg, "method"), "data": choice(cfg, "data"),
        "model": choice(cfg, "model"), "seed": cfg.get("seed"), "tag": cfg.get("tag"),
        "params": record["params"].get("network"), "train_status": train.get("status"),
        "images_seen": train.get("images_seen"), "train_wall_seconds": train.get("wall_seconds"),
        "gpu_hours": train.get("gpu_hours"), "train_device": record["env"].get("device"),
        "git_sha": record.get("git_sha"),
    }
    rows = []
    for ev in record["evals"]:
        if ev.get("checkpoint_step") is not None or ev.get("search_stage"):   # drawn over training / guidance only
            continue
        row = {**base, "weights": ev["weights"], "nfe": int(ev["nfe"]), "nfe_measured": ev["nfe_measured"],
               "guidance": float(ev["guidance"]), "n_samples": ev["n_samples"], "eval_seed": ev.get("seed"),
               "split": ev.get("split", "test")}
        row.update({k: ev["timing"].get(k) for k in timing_keys})
        row["load_note"] = load_note(ev["timing"], record["env"])
        row.update({METRIC_PREFIX + k: metric_value(v) for k, v in ev["metrics"].items()})
        row.update({WEIGHTS_PREFIX + k: src.get("weights_hash") for k, src in (ev.get("metric_sources") or {}).items()
                    if isinstance(src, dict) and src.get("weights_hash")})
        rows.append(row)
    return rows


def load(results_dir: Path) -> Results:
    results_dir = Path(results_dir)
    records, problems = rec.read_all(results_dir / "records")
    manifests, m_problems = sm.read_manifests(results_dir)
    by_id = {r["run_id"]: r for r in records}
    rows_by_id = {rid: _eval_rows(r) for rid, r in by_id.items()}
    rows, validation, claimed = [], [], set()
    for m in manifests:
        for job in m["jobs"]:
            claimed.add(job["run_id"])
            points = {(w, int(n), float(g)) for w, n, g in job["points"]}
            split = job.get("split", "test")
            for row in rows_by_id.get(job["run_id"], []):
                key = (row["weights"], row["nfe"], row["guidance"])
                if key in points and row["n_samples"] == job["n_samples"] and row["eval_seed"] == job["eval_seed"] \
                        and row["split"] == split:
                    (rows if split == "test" else validation).append(
                        {**row, "suite": m["suite"], "label": job["label"], "group": job["group"]})
    for rid, run_rows in rows_by_id.items():
        if rid not in claimed:
            label = choice(by_id[rid]["config"], "method") or "?"
            tag = by_id[rid]["config"].get("tag")
            rows += [{**r, "suite": OTHER, "label": f"{label} ({tag})" if tag else label, "group": ""}
                     for r in run_rows if r["split"] == "test"]       # validation points serve tuning only
    empty = ["suite", "label", "group", "run_id", "data", "nfe", "weights"]
    evals, valid = (pd.DataFrame(r) if r else pd.DataFrame(columns=empty) for r in (rows, validation))
    return Results(results_dir, evals, by_id, manifests, problems + m_problems, valid)


def train_log(run_dir: Path) -> pd.DataFrame | None:
    """A run's training log (one row per logged interval), or None when it is missing or unreadable."""
    return _jsonl(Path(run_dir) / artifacts.TRAIN_LOG)


def eval_log(run_dir: Path) -> pd.DataFrame | None:
    """A run's quality checks during training (``bench/train_quality.py``), or None."""
    return _jsonl(Path(run_dir) / artifacts.EVAL_LOG)


def _jsonl(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                return None
    return pd.DataFrame(rows) if rows else None


def samples(run_dir: Path, weights: str, nfe: int, guidance: float) -> np.ndarray | None:
    path = Path(run_dir) / artifacts.samples_name(weights, nfe, guidance)
    try:
        return np.load(path, allow_pickle=False) if path.exists() else None
    except (OSError, ValueError):
        return None


def reference(run_dir: Path) -> np.ndarray | None:
    path = Path(run_dir) / artifacts.REFERENCE
    try:
        return np.load(path, allow_pickle=False) if path.exists() else None
    except (OSError, ValueError):
        return None
