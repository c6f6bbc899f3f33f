"""Run records: one versioned JSON file per run in ``results/records/`` (DESIGN.md section 3).

This module imports no torch, so the report can read records on any machine.

Schema 1::

    schema, run_id, git_sha, git_dirty, created, updated,
    config    resolved Hydra config of the run
    env       python, torch, cuda, device, gpu_name, world_size, precision, hostname, platform, cpus,
              per_process_batch, world_size_invariant, world_size_note (why a run is not invariant)
    train     status, steps, images_seen, wall_seconds, gpu_hours, resumes, images_per_second, final_loss,
              lost_wall_seconds (training time redone after kills)
    params    parameter counts: network, trainable
    geometry  batch geometry, images and epochs seen, data/VAE/encoder hashes (bench/geometry.py; optional)
    evals     [{weights, nfe, nfe_measured, guidance, n_samples, seed, metrics, metric_sources, timing,
               checkpoint_step, labels, adm_samples, adm_evaluator, memorisation}]  (the last five optional)
    sweeps    optional: the guidance sweeps, best scale per (weights, nfe, checkpoint) (bench/evaluation/sweep.py)
    train_history  (optional) summaries of earlier trainings replaced by ``train.retrain=true``

Non-finite numbers (a diverged loss, an infinite distance) are written as the strings ``"nan"``,
``"inf"`` and ``"-inf"``, so every record is strict JSON; ``read`` turns them back into floats in the
numeric sections (``train``, ``train_history``, each evaluation's ``metrics`` and ``timing``).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import subprocess
from pathlib import Path
from typing import Any

from methods.harness.atomic import write_file_atomic

SCHEMA = 1
REQUIRED = ("schema", "run_id", "git_sha", "config", "env", "train", "params", "evals")
EVAL_KEYS = ("weights", "nfe", "nfe_measured", "guidance", "n_samples", "metrics", "timing")
TRAIN_KEYS = ("method", "data", "model", "train", "seed")   # config sections that define a training run
# Keys that change how a run is watched, saved or executed, not what it computes (the fast-path switches
# change float rounding only: a run may resume on another machine with other kernels; the data loader's
# settings change how fast data loads, not what; retrain says what to do when the checkpoint is gone; the
# quality checks during training watch the run without changing it).
BOOKKEEPING = {"train": ("progress", "log_every", "ckpt_every_steps", "ckpt_every_minutes", "accum_steps", "tf32",
                         "compile", "fused_adamw", "channels_last", "retrain", "keep_checkpoints", "eval_every",
                         "eval_samples", "collapse_below"),
               "data": ("num_workers", "prefetch", "decode_batch")}


class RecordError(ValueError):
    pass


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_state(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit sha, whether tracked files differ from it), or (None, None) outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha, bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        return None, None


def new_record(run_id: str, config: dict, env: dict, params: dict) -> dict:
    sha, dirty = git_state(Path(__file__).parent)
    return {"schema": SCHEMA, "run_id": run_id, "git_sha": sha, "git_dirty": dirty, "created": now(),
            "updated": now(), "config": config, "env": env, "train": {}, "params": params, "evals": []}


def validate(rec: Any, where: str = "record") -> dict:
    if not isinstance(rec, dict):
        raise RecordError(f"{where}: not a JSON object")
    if rec.get("schema") != SCHEMA:
        raise RecordError(f"{where}: schema {rec.get('schema')!r}, this driftbench reads schema {SCHEMA}")
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise RecordError(f"{where}: missing {missing}")
    for i, ev in enumerate(rec["evals"]):
        gone = [k for k in EVAL_KEYS if k not in ev]
        if gone:
            raise RecordError(f"{where}: evals[{i}] missing {gone}")
    return rec


NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode_nonfinite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``"nan"``, ``"inf"`` or ``"-inf"``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: encode_nonfinite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode_nonfinite(v) for v in obj]
    return obj


def _decode_numbers(section: Any) -> None:
    if isinstance(section, dict):
        for k, v in section.items():
            if isinstance(v, str) and v in NONFINITE:
                section[k] = NONFINITE[v]


def write_atomic(path: Path, rec: dict) -> None:
    """Write ``rec`` so that readers only ever see the old file or the complete new one."""
    validate(rec, str(path))
    rec["updated"] = now()
    text = json.dumps(encode_nonfinite(rec), indent=1, allow_nan=False) + "\n"
    write_file_atomic(path, lambda f: f.write(text), mode="w")


def read(path: Path) -> dict:
    try:
        record = validate(json.loads(Path(path).read_text()), str(path))
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not valid JSON ({e})") from e
    for section in [record["train"], *record.get("train_history", [])]:
        _decode_numbers(section)
    for ev in record["evals"]:
        _decode_numbers(ev["metrics"])
        _decode_numbers(ev["timing"])
    return record


def read_all(records_dir: Path) -> tuple[list[dict], list[str]]:
    """All readable records, and one line per file that could not be read (never raises for a bad file)."""
    records, problems = [], []
    for path in sorted(Path(records_dir).glob("*.json")):
        try:
            records.append(read(path))
        except (RecordError, OSError) as e:
            problems.append(str(e))
    return records, problems


def training_identity(config: dict) -> dict:
    """The part of a config that determines the trained weights (bookkeeping keys left out)."""
    ident = {k: config.get(k) for k in TRAIN_KEYS}
    for section, keys in BOOKKEEPING.items():
        if isinstance(ident.get(section), dict):
            ident[section] = {k: v for k, v in ident[section].items() if k not in keys}
    return ident


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Lines ``key: old -> new`` for every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += config_diff(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def eval_key(ev: dict) -> tuple:
    """(weights, nfe, guidance, n_samples, seed, split, checkpoint_step): records without a split were on the
    test split; the step is None for the run's final weights and the training step of an earlier checkpoint
    (``task=evaluate eval.checkpoints=...``)."""
    return (ev["weights"], ev["nfe"], float(ev["guidance"]), ev["n_samples"], ev.get("seed"), ev.get("split", "test"),
            ev.get("checkpoint_step"))


def find_eval(rec: dict, key: tuple, step: int | None = None) -> dict | None:
    """The entry of point ``key`` = (weights, nfe, guidance, n_samples, seed, split) at checkpoint ``step``."""
    return next((ev for ev in rec["evals"] if eval_key(ev) == (*key, step)), None)


def upsert_eval(rec: dict, entry: dict) -> None:
    rec["evals"] = [ev for ev in rec["evals"] if eval_key(ev) != eval_key(entry)] + [entry]
