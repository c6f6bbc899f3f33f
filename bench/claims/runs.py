"""The claims' runs, read from their one definition, ``bench/conf/suite/claims.yaml``.

A claim is a group of that suite; its key is the text in the group's leading parentheses (``(b) anti-
symmetry, Table 1`` -> ``b``, ``(12.7) sample allocation`` -> ``12.7``). ``python -m bench.suite claims``
runs every job in one process; ``bench.claims.drifting_toys`` runs the jobs of the claims asked for as
``python -m bench.run`` subprocesses, several at a time, then reads their records and artefacts.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import artifacts
from bench import record as rec
from bench.suite import expand_jobs, expand_prepare, load_suite, suite_file

SUITE = "claims"


@dataclass(frozen=True)
class ClaimRun:
    claim: str
    label: str
    data: str
    seed: int
    run_id: str
    overrides: tuple[str, ...]


def claim_key(group: str) -> str:
    m = re.match(r"\(([^)]+)\)", group)
    return m.group(1) if m else group


def _choice(overrides, key: str, default: str) -> str:
    found = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key]
    return found[-1] if found else default


def run_id(overrides) -> str:
    tag = _choice(overrides, "tag", "")
    return (f"{_choice(overrides, 'method', 'drifting')}-{_choice(overrides, 'data', 'ring8')}-"
            f"{_choice(overrides, 'model', 'mlp')}-s{_choice(overrides, 'seed', '0')}" + (f"-{tag}" if tag else ""))


def claim_runs(claims: list[str], seeds: list[int], results_dir: str) -> list[ClaimRun]:
    """Every job of the claims asked for, in the suite file's order, one per (variant, data, seed)."""
    spec = load_suite(suite_file(SUITE))
    known = list(dict.fromkeys(claim_key(j.get("group", "")) for j in spec["jobs"]))
    unknown = [c for c in claims if c not in known]
    if unknown:
        raise SystemExit(f"unknown claim(s) {unknown}; the claims suite defines: {', '.join(known)}")
    cli = [f"results_dir={results_dir}", "seed=" + ",".join(map(str, seeds))]
    out = []
    for job in expand_jobs(spec, cli):
        key = claim_key(job.group)
        if key in claims:
            out.append(ClaimRun(key, job.label, _choice(job.overrides, "data", "ring8"),
                                int(_choice(job.overrides, "seed", "0")), run_id(job.overrides), tuple(job.overrides)))
    return out


def prepare_overrides(results_dir: str) -> list[list[str]]:
    return [j.overrides for j in expand_prepare(load_suite(suite_file(SUITE)), [f"results_dir={results_dir}"])]


def bench_run(overrides, threads: int) -> tuple[list[str], int, str]:
    cmd = [sys.executable, "-m", "bench.run", *overrides, "train.progress=false"]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    lines = (p.stderr or p.stdout).strip().splitlines()
    return cmd, p.returncode, lines[-1] if lines else ""


def run_missing(runs: list[ClaimRun], results_dir: str, jobs: int, threads: int, needs_encoder: bool) -> None:
    """Run what has no finished record yet (the same job serving two variants runs once)."""
    if needs_encoder:
        for over in prepare_overrides(results_dir):
            report(*bench_run(over, threads))
    todo = {r.run_id: r.overrides for r in runs if status(results_dir, r.run_id) not in ("finished", "diverged")}
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for out in pool.map(lambda o: bench_run(o, threads), todo.values()):
            report(*out)


def report(cmd: list[str], code: int, last: str) -> None:
    print(("ok   " if code == 0 else f"FAIL {code} ") + " ".join(cmd[3:]) + ("" if code == 0 else f"\n     {last}"),
          flush=True)


def status(results_dir: str, rid: str) -> str:
    """``missing`` (no record), or the record's training status (``finished``, ``diverged``, ``partial``)."""
    path = Path(results_dir) / "records" / f"{rid}.json"
    return rec.read(path)["train"].get("status", "partial") if path.exists() else "missing"


def record(results_dir: str, rid: str) -> dict | None:
    path = Path(results_dir) / "records" / f"{rid}.json"
    if not path.exists():
        return None
    r = rec.read(path)
    return r if r["train"].get("status") == "finished" and r["evals"] else None


def evals_by_guidance(results_dir: str, rid: str) -> dict[float, dict]:
    """Metrics of the run's evaluation points with the first evaluated weights, by guidance."""
    r = record(results_dir, rid)
    if r is None:
        return {}
    first = r["evals"][0]["weights"]
    return {float(e["guidance"]): e["metrics"] for e in r["evals"] if e["weights"] == first}


def samples(results_dir: str, rid: str, guidance: float = 1.0) -> np.ndarray | None:
    r = record(results_dir, rid)
    if r is None:
        return None
    path = Path(results_dir) / "runs" / rid / artifacts.samples_name(r["evals"][0]["weights"], 1, guidance)
    return np.load(path) if path.exists() else None


def jsonl(results_dir: str, rid: str, name: str) -> list[dict]:
    import json
    path = Path(results_dir) / "runs" / rid / name
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
