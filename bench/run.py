"""``python -m bench.run [-m] key=value ...``: compose -> validate -> run the task (``task=``, ``bench.tasks``).

The default task trains (or resumes), evaluates and writes the run record (``bench/tasks/train.py``).

Every job of the command line (all jobs of a ``-m`` sweep) is validated before the first one starts, so a
bad option or key fails in one line without training anything or touching existing results. The checks
that need no torch run on every job first (``bench.tasks.precheck``), so most mistakes are refused in
well under 2 s (``bench/perf/first_error.py``); ``--help`` is ``bench/cli_help.py``. A sweep (any
launcher: ``local``, ``submitit_local``, ``slurm``) ends with one line per job (done, skipped, refused with
its reason, failed with its log) and exits non-zero when a job did not succeed. ``launcher=slurm`` (or
``submitit_local``) submits even without ``-m``, and is refused in one line where no scheduler answers;
jobs are validated for the world size they will have (nodes x tasks per node).
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bench import outcomes
from bench.cluster import check_scheduler, launch_plan, planned_world
from bench.config import RunSpec, compose_config, expand_sweep
from bench.errors import ConfigError, RunError
from bench.jobs import run_job
from bench.tasks import execute, precheck, prepare

MULTIRUN = {"-m", "--multirun"}


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> str | None:
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return run_job(cfg, hc.job.num, list(hc.overrides.task))
    try:
        return str(execute(prepare(cfg)))
    except (ConfigError, RunError) as e:
        print(f"bench.run: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


def validate(words: list[str]) -> tuple[list[list[str]], object, bool]:
    """Every job's overrides, the first job's spec, and whether the launcher submits jobs."""
    jobs = expand_sweep(words)
    configs = [compose_config(job) for job in jobs]
    for cfg in configs:                      # torch-free checks of every job first: the fast errors
        precheck(cfg)
    plan = launch_plan(configs[0])
    check_scheduler(plan)
    with planned_world(plan.world):
        specs = [prepare(compose_config(job)) for job in jobs]
    for job, spec in zip(jobs, specs):
        refuse_changed(spec, job if len(jobs) > 1 else [])
    return jobs, specs[0], plan.submits


def refuse_changed(spec, job: list[str]) -> None:
    """A changed training config under an existing run id, refused before any job starts."""
    if not isinstance(spec, RunSpec):
        return
    from bench.tasks.train import check_existing

    results = Path(spec.top.results_dir)
    try:
        check_existing(spec, results / "records" / f"{spec.run_id}.json", results / "runs" / spec.run_id)
    except RunError as e:
        raise ConfigError(f"job [{' '.join(job)}]: {e}" if job else str(e)) from None


def main() -> None:
    args = sys.argv[1:]
    if {"-h", "--help"} & set(args):
        from bench.cli_help import usage
        print(usage())
        return
    flags = [a for a in args if a.startswith("-")]
    jobs = None
    if set(flags) <= MULTIRUN:   # other flags (--cfg job, --hydra-help, ...) go to Hydra as they are
        try:
            jobs, first, submits = validate([a for a in args if not a.startswith("-")])
        except ConfigError as e:
            print(f"bench.run: error: {e}", file=sys.stderr)
            sys.exit(2)
        if submits and not flags:            # launcher=slurm runs nothing here: it submits
            sys.argv.insert(1, "-m")
        if "-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]:
            folder = outcomes.new_folder(first.top.results_dir)
        else:
            jobs = None
    hydra_entry()
    if jobs is not None:
        sys.exit(1 if outcomes.summarise(folder, jobs, "bench.run") else 0)


if __name__ == "__main__":
    main()
