"""``python -m bench.run [-m] key=value ...``: compose -> validate -> run the task (``task=``, ``bench.tasks``).

The default task trains (or resumes), evaluates and writes the run record (``bench/tasks/train.py``).

Every job of the command line (all jobs of a ``-m`` sweep) is validated before the first one starts, so a
bad option or key fails in one line without training anything or touching existing results. The checks
that need no torch run on every job first (``bench.tasks.precheck``), so most mistakes are refused in
well under 2 s (``bench/perf/first_error.py``); ``--help`` is ``bench/cli_help.py``.
"""
from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bench.config import compose_config, expand_sweep
from bench.errors import ConfigError, RunError
from bench.tasks import execute, precheck, prepare

FAILED: list[str] = []


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> str | None:
    try:
        return str(execute(prepare(cfg)))
    except (ConfigError, RunError) as e:
        print(f"bench.run: error: {e}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            FAILED.append(str(e))
            return None
        sys.exit(e.exit_code)


def main() -> None:
    args = sys.argv[1:]
    if {"-h", "--help"} & set(args):
        from bench.cli_help import usage
        print(usage())
        return
    flags = [a for a in args if a.startswith("-")]
    if set(flags) <= {"-m", "--multirun"}:   # other flags (--cfg job, --hydra-help, ...) go to Hydra as they are
        try:
            configs = [compose_config(job) for job in expand_sweep([a for a in args if not a.startswith("-")])]
            for cfg in configs:              # torch-free checks of every job first: the fast errors
                precheck(cfg)
            for cfg in configs:
                prepare(cfg)
        except ConfigError as e:
            print(f"bench.run: error: {e}", file=sys.stderr)
            sys.exit(2)
    hydra_entry()
    if FAILED:
        print(f"bench.run: {len(FAILED)} job(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
