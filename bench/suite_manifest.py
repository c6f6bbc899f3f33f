"""Suite manifests and progress, without torch (the report reads them).

A suite (``bench/conf/suite/NAME.yaml``, run by ``python -m bench.suite NAME``) expands into jobs; before
the first job starts, the runner writes ``<results>/suites/NAME.json``, the *manifest*: for every job
its run id, label (what the report compares: a method, or a claim's variant), group, overrides and the
evaluation points it must produce. Progress is never stored: it is read off the run records, so a suite
that was stopped resumes where the records say it stopped, and the report says what is still missing.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import record as rec

MANIFEST_SCHEMA = 1
SUITE_DIR = Path(__file__).parent / "conf" / "suite"
JOB_KEYS = ("run_id", "label", "group", "method", "data", "seed", "overrides", "points", "n_samples",
            "eval_seed", "metrics")


class ManifestError(ValueError):
    pass


def choice(config: dict, group: str) -> str | None:
    """The config file a run chose for ``group`` (``model=dit_digits``), or, in records written before
    choices were recorded, the section's ``name``."""
    return (config.get("choices") or {}).get(group) or (config.get(group) or {}).get("name")


def available_suites(suite_dir: Path = SUITE_DIR) -> dict[str, str]:
    """Suite name -> its one-line description, for every preset in ``bench/conf/suite``."""
    out = {}
    for path in sorted(Path(suite_dir).glob("*.yaml")):
        try:
            spec = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            out[path.stem] = f"(unreadable: {str(e).splitlines()[0]})"
            continue
        out[path.stem] = " ".join(str(spec.get("description", "")).split())
    return out


def manifest_path(results_dir: Path, suite: str) -> Path:
    return Path(results_dir) / "suites" / f"{suite}.json"


def write_manifest(results_dir: Path, manifest: dict) -> Path:
    """Atomically write a suite's manifest (readers see the old file or the new one)."""
    check_manifest(manifest, manifest.get("suite", "manifest"))
    path = manifest_path(results_dir, manifest["suite"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_manifest(m: Any, where: str) -> dict:
    if not isinstance(m, dict) or m.get("schema") != MANIFEST_SCHEMA:
        raise ManifestError(f"{where}: not a schema-{MANIFEST_SCHEMA} suite manifest")
    if not isinstance(m.get("suite"), str) or not isinstance(m.get("jobs"), list):
        raise ManifestError(f"{where}: needs 'suite' (string) and 'jobs' (list)")
    for i, job in enumerate(m["jobs"]):
        missing = [k for k in JOB_KEYS if not isinstance(job, dict) or k not in job]
        if missing:
            raise ManifestError(f"{where}: jobs[{i}] missing {missing}")
    return m


def read_manifests(results_dir: Path) -> tuple[list[dict], list[str]]:
    """Every readable manifest under ``<results>/suites``, and one line per file that was skipped."""
    manifests, problems = [], []
    for path in sorted((Path(results_dir) / "suites").glob("*.json")):
        try:
            manifests.append(check_manifest(json.loads(path.read_text()), str(path)))
        except json.JSONDecodeError as e:
            problems.append(f"{path}: not valid JSON ({e})")
        except (ManifestError, OSError) as e:
            problems.append(str(e))
    return manifests, problems


@dataclass
class JobStatus:
    """Where one job stands: ``missing`` (no record), ``diverged``, ``training`` (a partial run),
    ``evaluating`` (trained, some points or metrics missing) or ``done``."""

    state: str
    missing_points: list[tuple[str, int, float]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state == "done"


def job_status(job: dict, record: dict | None) -> JobStatus:
    """Compare a manifest job with its run record (the same test ``bench.run`` uses to skip work)."""
    points = [(w, int(n), float(g)) for w, n, g in job["points"]]
    if record is None:
        return JobStatus("missing", points)
    status = record["train"].get("status")
    todo = []
    for w, n, g in points:
        ev = rec.find_eval(record, (w, n, g, job["n_samples"], job["eval_seed"], job.get("split", "test")))
        if ev is None or not set(job["metrics"]) <= set(ev["metrics"]):
            todo.append((w, n, g))
    if status == "diverged":
        return JobStatus("diverged", todo)
    if status != "finished":
        return JobStatus("training", todo)
    return JobStatus("evaluating" if todo else "done", todo)


def suite_progress(manifest: dict, records_by_id: dict[str, dict]) -> dict[str, JobStatus]:
    """run id -> status for every job of a suite."""
    return {job["run_id"]: job_status(job, records_by_id.get(job["run_id"])) for job in manifest["jobs"]}
