"""Where ``bench.suite`` runs its jobs: here, one after another (``launcher=local``, the default), or
submitted (``launcher=slurm``: the whole suite as one SLURM job array, each job one run with DDP over its
tasks; ``launcher=submitit_local``: the same through local submitit processes). Either way every job
records its outcome (``bench.outcomes``) and the suite ends with one line per job.

Submitted suites first run their ``prepare`` jobs (e.g. the feature encoders) as an array of their own
and wait for it, since the other jobs read what they write.
"""
from __future__ import annotations

from pathlib import Path

from bench import outcomes
from bench.cluster import LaunchPlan
from bench.jobs import SubmittedJob, run_spec

PROG = "bench.suite"


def run_here(prepared: list, results_dir: str) -> int:
    """Run validated (job, spec) pairs in this process; the number that did not succeed."""
    folder = outcomes.new_folder(results_dir)
    for i, (job, spec) in enumerate(prepared):
        print(f"[{i + 1}/{len(prepared)}] {job.label}: {spec.run_id}", flush=True)
        run_spec(lambda s=spec: s, i, job.overrides, PROG)
    return outcomes.summarise(folder, [job.overrides for job, _ in prepared], PROG)


def submit(plan: LaunchPlan, overrides: list[list[str]], results_dir: str, name: str) -> int:
    """Submit one array of jobs (their overrides), wait for all of them; the number that did not succeed."""
    from hydra_plugins.driftbench_launchers import collect, make_executor

    folder = outcomes.new_folder(results_dir)
    kind = "slurm" if plan.kind == "slurm" else "local"
    executor = make_executor(kind, {**plan.params, "name": f"driftbench-{name}"})
    with executor.batch():
        jobs = [executor.submit(SubmittedJob(o, i, PROG)) for i, o in enumerate(overrides)]
    for i, (job, over) in enumerate(zip(jobs, overrides)):
        print(f"submitted job {i} as {kind} job {job.job_id}: {' '.join(over)}", flush=True)
    print(f"{PROG}: waiting for {len(jobs)} job(s); logs in {Path(str(jobs[0].paths.folder)).parent}", flush=True)
    collect(jobs, list(range(len(jobs))), overrides)
    return outcomes.summarise(folder, overrides, PROG)
