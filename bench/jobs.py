"""One job of a sweep or a suite, however it was launched (in this process, a local submitit process or
a SLURM job): validate, run the preflight when submitted, execute, and record its outcome
(``bench.outcomes``) so that the submitting process can report every job in one line.

Only rank 0 of a multi-process job records. A preempted job exits through ``SystemExit`` (submitit's
requeue) and records nothing: its next start does.
"""
from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

from omegaconf import DictConfig

from bench import outcomes
from bench.errors import ConfigError, RunError


def submitted() -> bool:
    """Whether this process runs inside a submitit job (local or SLURM)."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


def job_log() -> str | None:
    """This job's log file when a scheduler keeps one (submitit's stderr), else None (the terminal)."""
    if not submitted():
        return None
    import submitit

    return str(submitit.JobEnvironment().paths.stderr)


def already_done(spec) -> bool:
    """A finished run with every evaluation point recorded, or a pretraining product that exists."""
    from bench.config import RunSpec
    from bench.tasks.train import check_existing, pending_points

    if not isinstance(spec, RunSpec):
        out = getattr(spec, "out_path", None)
        return out is not None and Path(out).exists()
    results = Path(spec.top.results_dir)
    stored = check_existing(spec, results / "records" / f"{spec.run_id}.json", results / "runs" / spec.run_id)
    return bool(stored) and stored["train"].get("status") == "finished" and not pending_points(spec, stored)


def run_job(cfg: DictConfig, num: int, overrides: list[str], prog: str = "bench.run") -> str | None:
    """Validate and run one job, recording its outcome; the path it produced (None when it did not succeed)."""
    from bench.tasks import prepare

    return run_spec(lambda: prepare(cfg), num, overrides, prog)


def run_spec(make_spec, num: int, overrides: list[str], prog: str) -> str | None:
    """Run the job whose spec ``make_spec()`` validates, recording its outcome (rank 0 only)."""
    from bench.tasks import execute
    from methods.harness.dist import env_rank_world

    main = env_rank_world()[0] == 0
    outcome = outcomes.Outcome(num, list(overrides), "failed")
    try:
        spec = make_spec()
        if submitted():
            from bench.doctor import preflight
            preflight(spec)
        skipped = already_done(spec)
        path = str(execute(spec))
        outcome.status, outcome.record = ("skipped" if skipped else "done"), path
        return path
    except ConfigError as e:
        outcome.status, outcome.reason = "refused", str(e)
    except RunError as e:
        outcome.reason, outcome.log = str(e), job_log()
    except Exception as e:                   # noqa: BLE001 (a bug: keep the traceback, report one line)
        trace = Path(outcomes.current_folder() or tempfile.gettempdir()) / f"job{num}-traceback.txt"
        trace.write_text(traceback.format_exc())
        outcome.reason, outcome.log = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", str(trace)
    finally:
        if main and (outcome.status != "failed" or outcome.reason):   # not when preempted (SystemExit)
            outcomes.write(outcome)
    print(f"{prog}: error: job {num}: {outcome.reason}", file=sys.stderr, flush=True)
    return None


class SubmittedJob:
    """One job of ``bench.suite ... launcher=slurm`` as a submitit callable: composes its config on the
    node and runs it; ``checkpoint`` resubmits it unchanged on preemption (submitit's protocol)."""

    def __init__(self, overrides: list[str], num: int, prog: str = "bench.suite"):
        self.overrides, self.num, self.prog = list(overrides), num, prog

    def __call__(self) -> str | None:
        from bench.config import compose_config

        return run_job(compose_config(self.overrides), self.num, self.overrides, self.prog)

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(self)
