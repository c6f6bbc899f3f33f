"""``python -m bench.suite NAME [key=value ...] [--only LABELS] [--list] [--report]``: run a suite.

A suite is a preset in ``bench/conf/suite/NAME.yaml`` (or a path to such a file)::

    description: what the suite compares (shown in the report)
    overrides: [model=mlp, train=toy, "data=ring8,grid25", "seed=0,1,2"]    # every job
    jobs:
      - label: drifting                  # what the report compares (a method, or a claim's variant)
        group: ""                        # optional: jobs compared with each other (a claim)
        overrides: [method=drifting]
      - label: flow
        overrides: [method=flow, "eval.nfe=[1,2,4,8]"]

``prepare`` (optional) lists jobs that make inputs for the others, with the same entries as ``jobs``
but without the suite's overrides (e.g. ``[task=pretrain_encoder, data=digits]``, the feature encoder of
drifting on digits); they run first, are resumable, and are not part of the comparison.

Overrides use ``bench.run``'s Hydra syntax; ``a=x,y`` sweeps expand into one job per value, and a job's
override replaces the suite's override of the same key. Overrides on the command line apply to every
job (``device=cuda``, ``results_dir=...``). Jobs run one after another in this process through
``bench.run``'s machinery, so a suite resumes where it stopped: finished runs and evaluation points are
skipped and interrupted training continues from its last checkpoint. Every job is composed and validated
(and checked against existing records) before the first one starts: a bad suite fails in one line.
``launcher=slurm`` submits the whole suite as one SLURM job array instead (``bench/suite_launch.py``);
either way the suite ends with one line per job and exits non-zero when a job did not succeed.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import record as rec
from bench import suite_compare as sc
from bench import suite_manifest as sm
from bench.suite_manifest import choice
from bench.cluster import check_scheduler, launch_plan, planned_world
from bench.config import RunSpec, compose_config, expand_sweep
from bench.errors import ConfigError, RunError
from bench.tasks import execute, prepare
from bench.suite_launch import run_here, submit
from bench.tasks.train import check_existing

SUITE_KEYS = ("description", "overrides", "prepare", "jobs", "differences", "choose_weights")
JOB_ENTRY_KEYS = ("label", "group", "overrides")


@dataclass
class Job:
    label: str
    group: str
    overrides: list[str]


def suite_file(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"suite file '{name}' does not exist")
        return path
    path = sm.SUITE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown suite '{name}'; choose one of: {', '.join(sm.available_suites())} "
                          f"(or give the path of a suite .yaml)")
    return path


def _strings(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ConfigError(f"{where} must be a list of override strings like 'data=ring8'")
    return [str(v) for v in value]


def load_suite(path: Path) -> dict:
    """The suite file, checked: known keys, a description, a non-empty list of labelled jobs."""
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a suite is a mapping with keys {', '.join(SUITE_KEYS)}")
    unknown = sorted(set(spec) - set(SUITE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys: {', '.join(SUITE_KEYS)}")
    jobs = spec.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise ConfigError(f"{path}: 'jobs' must be a non-empty list of {{label, overrides}} entries")
    if not isinstance(spec.get("prepare", []), list):
        raise ConfigError(f"{path}: 'prepare' must be a list of {{label, overrides}} entries")
    for key in ("prepare", "jobs"):
        for i, job in enumerate(spec.get(key) or []):
            if not isinstance(job, dict) or not isinstance(job.get("label"), str) or not job["label"]:
                raise ConfigError(f"{path}: {key}[{i}] needs a 'label' (the name the report shows)")
            bad = sorted(set(job) - set(JOB_ENTRY_KEYS))
            if bad:
                raise ConfigError(f"{path}: {key}[{i}] has unknown key(s) {bad}; valid keys: "
                                  f"{', '.join(JOB_ENTRY_KEYS)}")
            _strings(job.get("overrides"), f"{path}: {key}[{i}].overrides")
    _strings(spec.get("overrides"), f"{path}: overrides")
    diffs = spec.get("differences") or {}
    if not isinstance(diffs, dict) or not all(isinstance(v, str) and v.strip() for v in diffs.values()):
        raise ConfigError(f"{path}: 'differences' maps a compared key ({', '.join(sc.COMPARED)}) to the reason "
                          f"the jobs differ in it")
    if spec.get("choose_weights") not in (None, "validation"):
        raise ConfigError(f"{path}: choose_weights must be 'validation' (every kept EMA evaluated on the "
                          f"validation split too) or absent, got {spec['choose_weights']!r}")
    return spec


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(*lists: list[str]) -> list[str]:
    """Concatenate override lists; an override replaces an earlier one of the same key, in its place."""
    merged: dict[str, str] = {}
    for lst in lists:
        for o in lst:
            merged.pop(override_key(o), None)
            merged[override_key(o)] = o
    return list(merged.values())


def expand_jobs(spec: dict, cli_overrides: list[str], only: set[str] | None = None) -> list[Job]:
    """One ``Job`` per point of every entry's sweep, in file order; identical jobs appear once."""
    labels = {j["label"] for j in spec["jobs"]}
    if only and only - labels:
        raise ConfigError(f"--only {sorted(only - labels)}: no such job label; labels: {', '.join(sorted(labels))}")
    jobs, seen = [], set()
    for entry in spec["jobs"]:
        if only and entry["label"] not in only:
            continue
        merged = merge_overrides(_strings(spec.get("overrides"), "overrides"),
                                 _strings(entry.get("overrides"), "overrides"), cli_overrides)
        for overrides in expand_sweep(merged):
            twins = [overrides] + ([sc.validation_twin(overrides)] if spec.get("choose_weights") else [])
            for o in twins:
                key = (entry["label"], tuple(o))
                if key not in seen:
                    seen.add(key)
                    jobs.append(Job(entry["label"], str(entry.get("group") or ""), o))
    return jobs


def expand_prepare(spec: dict, cli_overrides: list[str]) -> list[Job]:
    """The ``prepare`` jobs: their own overrides and the command line's, not the suite's."""
    return [Job(e["label"], "", o) for e in spec.get("prepare") or []
            for o in expand_sweep(merge_overrides(_strings(e.get("overrides"), "prepare"), cli_overrides))]


def products(specs) -> list[str]:
    """Files the prepare jobs write that other jobs read (a pretraining task's ``out_path``)."""
    return [str(p) for p in (getattr(s, "out_path", None) for s in specs) if p is not None and not Path(p).exists()]


def _describe(job: Job) -> str:
    return f"{job.label} [{' '.join(job.overrides)}]"


def prepare_jobs(jobs: list[Job], pending: list[str] = ()) -> tuple[list[tuple[Job, RunSpec]], list[Job]]:
    """Compose and validate every job; refuse run-id clashes and changed configs under existing ids.

    A job whose only problem is a missing file in ``pending`` (made by a prepare job that has not run
    yet) is returned apart, to be validated again once that file exists."""
    prepared, by_id, deferred = [], {}, []
    for i, job in enumerate(jobs):
        try:
            spec = prepare(compose_config(job.overrides))
        except ConfigError as e:
            if any(p in str(e) for p in pending):
                deferred.append(job)
                continue
            raise ConfigError(f"job {i + 1}/{len(jobs)} {_describe(job)}: {e}") from None
        if not isinstance(spec, RunSpec):         # a prepare task (e.g. encoder pretraining): no run record
            prepared.append((job, spec))
            continue
        if spec.run_id in by_id:      # one run may serve several labels (a claim's default variant)
            first, first_spec = by_id[spec.run_id]
            if rec.config_diff(rec.training_identity(first_spec.config), rec.training_identity(spec.config)):
                raise ConfigError(f"jobs {_describe(first)} and {_describe(job)} both give run id "
                                  f"'{spec.run_id}' with different training configs; add tag=NAME to one of them")
        by_id[spec.run_id] = (job, spec)
        results = Path(spec.top.results_dir)
        try:
            check_existing(spec, results / "records" / f"{spec.run_id}.json", results / "runs" / spec.run_id)
        except RunError as e:
            raise ConfigError(f"job {_describe(job)}: {e}") from None
        prepared.append((job, spec))
    dirs = {spec.top.results_dir for _, spec in prepared}
    if len(dirs) > 1:
        raise ConfigError(f"the jobs of one suite must share results_dir, got {sorted(dirs)}")
    return prepared, deferred


def manifest_job(job: Job, spec: RunSpec) -> dict:
    return {"run_id": spec.run_id, "label": job.label, "group": job.group, "method": choice(spec.config, "method"),
            "data": choice(spec.config, "data"), "seed": spec.top.seed, "overrides": job.overrides,
            "points": [list(p) for p in spec.points], "n_samples": spec.eval.num_samples,
            "eval_seed": spec.eval.seed, "metrics": list(spec.metrics), "split": spec.eval.split,
            "compared": sc.compared_values(spec.config, spec.eval.num_samples)}


def check_comparisons(prepared: list[tuple[Job, RunSpec]], spec: dict) -> None:
    """Refuse comparisons that are not like for like (``bench.suite_compare``), before anything runs."""
    sc.check_like_for_like([{**manifest_job(j, s), "values": manifest_job(j, s)["compared"]}
                            for j, s in prepared if isinstance(s, RunSpec)], spec.get("differences"))


def build_manifest(name: str, spec: dict, prepared: list[tuple[Job, RunSpec]], argv: list[str],
                   previous: dict | None) -> dict:
    """The manifest of this invocation; jobs of other labels kept from ``previous`` (``--only`` runs)."""
    jobs = [manifest_job(j, s) for j, s in prepared]
    labels = {j["label"] for j in jobs}
    if previous:
        jobs = [j for j in previous["jobs"] if j["label"] not in labels] + jobs
    sha, dirty = rec.git_state(Path(__file__).parent)
    return {"schema": sm.MANIFEST_SCHEMA, "suite": name, "description": " ".join(str(spec.get("description", "")).split()),
            "differences": dict(spec.get("differences") or {}),
            "labels": list(dict.fromkeys(j["label"] for j in spec["jobs"])), "git_sha": sha, "git_dirty": dirty,
            "written": rec.now(), "command": "python -m bench.suite " + " ".join(map(shlex.quote, argv)),
            "jobs": jobs}


def print_status(prepared: list[tuple[Job, RunSpec]], results: Path) -> int:
    done = 0
    for job, spec in prepared:
        path = results / "records" / f"{spec.run_id}.json"
        try:
            record = rec.read(path) if path.exists() else None
        except rec.RecordError as e:
            print(f"  unreadable  {spec.run_id}: {e}")
            continue
        st = sm.job_status(manifest_job(job, spec), record)
        done += st.done
        extra = f" ({len(st.missing_points)} evaluation point(s) to do)" if st.missing_points and record else ""
        print(f"  {st.state:<10}  {spec.run_id}  [{job.label}]{extra}")
    return done


def args_results(prepared, before) -> str:
    return (prepared or before)[0][1].top.results_dir


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.split("\n")[0])
    p.add_argument("suite", help=f"a preset ({', '.join(sm.available_suites())}) or a suite .yaml path")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every job")
    p.add_argument("--only", default=None, help="comma-separated job labels to run (default: all)")
    p.add_argument("--list", action="store_true", help="validate and show every job's status; run nothing")
    p.add_argument("--report", action="store_true", help="build the HTML report when the suite ends")
    return p.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    name = Path(args.suite).stem
    try:
        spec = load_suite(suite_file(args.suite))
        only = {s.strip() for s in args.only.split(",") if s.strip()} if args.only else None
        jobs = expand_jobs(spec, args.overrides, only)
        plan = launch_plan(compose_config(jobs[0].overrides))
        if not args.list:                          # --list submits nothing
            check_scheduler(plan)
        with planned_world(plan.world):
            before, _ = prepare_jobs(expand_prepare(spec, args.overrides))
            prepared, deferred = prepare_jobs(jobs, products(s for _, s in before))
        check_comparisons(prepared, spec)
    except ConfigError as e:
        print(f"bench.suite: error: {e}", file=sys.stderr)
        return 2
    if args.list:
        done = print_status(prepared, Path(args_results(prepared, before)))
        waiting = f"; {len(deferred)} wait for the prepare jobs" if deferred else ""
        print(f"suite {name}: {done}/{len(prepared) + len(deferred)} job(s) done{waiting}")
        return 0
    if plan.submits and before:
        if submit(plan, [job.overrides for job, _ in before], args_results(prepared, before), f"{name}-prepare"):
            print("bench.suite: a prepare job did not succeed; nothing else was submitted", file=sys.stderr)
            return 1
    for job, pre in [] if plan.submits else before:
        print(f"prepare {job.label}: {pre.run_id}", flush=True)
        try:
            execute(pre)
        except (RunError, ConfigError) as e:
            print(f"bench.suite: prepare job {job.label} failed: {e}", file=sys.stderr)
            return 1
    if deferred:                                  # the files they wait for exist now: validate everything again
        try:
            with planned_world(plan.world):
                prepared = prepare_jobs(jobs)[0]
            check_comparisons(prepared, spec)
        except ConfigError as e:
            print(f"bench.suite: error: {e}", file=sys.stderr)
            return 2
    results = Path(args_results(prepared, before))
    previous = None
    if sm.manifest_path(results, name).exists():
        found, _ = sm.read_manifests(results)
        previous = next((m for m in found if m["suite"] == name), None)
    path = sm.write_manifest(results, build_manifest(name, spec, prepared, argv, previous))
    print(f"suite {name}: {len(prepared)} job(s); manifest {path}")
    if plan.submits:
        failed = submit(plan, [job.overrides for job, _ in prepared], str(results), name)
    else:
        failed = run_here(prepared, str(results))
    if args.report:
        from bench.report import build_report
        print(f"Report: {build_report(results).resolve()}")
    else:
        where = "" if Path(results) == Path("results") else f" --results {results}"
        print(f"Build the report with: python -m bench.report{where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
