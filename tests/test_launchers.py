"""Sweeps and suites report every job and exit non-zero when one did not succeed, with the basic and the
submitit-local launchers (SLURM: tests/test_slurm.py); ``launcher=slurm`` without a scheduler is one line;
cluster profiles compose and jobs are validated for the world size they will have; ``bench.doctor``."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from bench.cluster import launch_plan, planned_world
from bench.config import ConfigError, compose_config
from bench.tasks import prepare
from tests.conftest import FAST, bench_env, run_bench

SWEEP = [*FAST, "train.steps=6", "train.ckpt_every_steps=2", "train.lr=0.003,1e30", "tag=lr${train.lr}"]


@pytest.mark.parametrize("launcher", ["local", pytest.param("submitit_local", marks=pytest.mark.slow)])
def test_a_sweep_with_a_failing_job_names_it_and_exits_nonzero(results, launcher):
    proc = run_bench(f"launcher={launcher}", *SWEEP, "-m", results=results, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "bench.run: 2 job(s): 1 done, 1 failed" in proc.stdout
    done, failed = [line for line in proc.stdout.splitlines() if line.startswith("  job ")]
    assert re.match(r"  job 0 +done +train.lr=0.003: \S+drifting-ring8-mlp-s0-lr0.003.json$", done), done
    assert re.match(r"  job 1 +failed +train.lr=1e\+30: training diverged: non-finite", failed), failed
    if launcher == "submitit_local":                      # the log is the job's own
        log = Path(failed.rsplit("; log: ", 1)[1])
        assert log.name.endswith("_log.err") and "training diverged" in log.read_text()
        return
    rerun = run_bench(f"launcher={launcher}", *SWEEP, "-m", results=results, check=False)
    assert "1 skipped, 1 failed" in rerun.stdout and "complete before" in rerun.stdout


def test_launcher_slurm_without_a_scheduler_is_one_line(results):
    env = {"PATH": str(Path(sys.executable).parent)}          # no sbatch, no sinfo
    for args in (["launcher=slurm"], ["-m", "launcher=slurm", "seed=0,1"]):
        proc = run_bench(*args[1:], *args[:1], results=results, check=False, extra_env=env, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("bench.run: error: launcher=slurm: no SLURM scheduler here")
        assert "launcher=submitit_local" in proc.stderr and not results.exists()


def test_a_suite_reports_every_job(tmp_path, capsys):
    from bench.suite import main

    suite = tmp_path / "s.yaml"
    suite.write_text("description: one good and one diverging run\n"
                     f"overrides: [{', '.join(repr(o) for o in [*FAST, 'train.steps=6', f'results_dir={tmp_path}'])}]\n"
                     "jobs:\n  - {label: good, overrides: []}\n"
                     "  - {label: bad, overrides: [train.lr=1e30, tag=bad]}\n")
    assert main([str(suite)]) == 1
    out = capsys.readouterr().out
    assert "bench.suite: 2 job(s): 1 done, 1 failed" in out, out
    assert re.search(r"  job 1 +failed +train.lr=1e30 tag=bad: training diverged", out), out


def test_cluster_profiles_and_the_world_size_jobs_are_validated_for(tmp_path):
    plan = launch_plan(compose_config(["launcher=slurm", "cluster=example", "hydra.launcher.nodes=2"]))
    assert (plan.kind, plan.world, plan.params["partition"], plan.params["additional_parameters"]) == (
        "slurm", 16, "gpu", {"requeue": True})
    with pytest.raises(ConfigError, match="cluster=local is a SLURM profile; add launcher=slurm"):
        launch_plan(compose_config(["cluster=local"]))
    cfg = compose_config([f"results_dir={tmp_path}", "launcher=slurm", "cluster=example", "method=drifting",
                          "data=digits", "method.encoder_path=null", "method.classes_per_step=12", "train.batch_size=64"])
    with planned_world(launch_plan(cfg).world), pytest.raises(ConfigError, match="divisible by the 8 processes"):
        prepare(cfg)
    with pytest.raises(ConfigError, match="group_size=48 must be >= 2 and divide train.batch_size=64"):
        prepare(compose_config([f"results_dir={tmp_path}", "method.group_size=48", "train.batch_size=64"]))


def test_doctor_prints_one_line_per_check_and_fails_on_unwritable_results(tmp_path, capsys):
    from bench.doctor import main

    assert main([f"results_dir={tmp_path / 'ok'}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["config:", "results:", "data:", "metrics", "device:", "disk:"]
    assert all(line.startswith("ok") for line in lines)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([f"results_dir={blocker}"]) == 2                 # a refused input (bench.errors): exit 2
    bad = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(bad) == 2 and "is a file, not a folder" in bad[0]
    assert "results:" in bad[1] and "point results_dir= at a writable folder" in bad[1]
    assert main(["method=nope"]) == 2
    assert capsys.readouterr().out.startswith("FAIL  config: unknown method 'nope'")
