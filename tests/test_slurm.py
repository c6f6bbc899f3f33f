"""Against a real SLURM (``slurm/local_cluster.sh up``; CI's ``.ci/run`` brings one up): a sweep through
Hydra's submitit launcher, a suite as one job array, a job requeued mid-training (``scontrol requeue``)
that resumes and ends bitwise equal to an uninterrupted run, and a 2-task DDP job (gloo) of conditional
drifting that equals one process, queues included, also across a preemption (USR2: checkpoint and
requeue through submitit). Skipped where no scheduler answers."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import DDP_ATOL, ROOT, bench_env, run_bench


def _scheduler() -> bool:
    if shutil.which("sbatch") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(not _scheduler(), reason="no SLURM scheduler answers")]
SLURM = ["launcher=slurm", "cluster=local"]
TOY = ["train.batch_size=64", "train.progress=false", "train.log_every=10", "eval.num_samples=200",
       "eval.batch_size=200", "eval.latency_repeats=0"]
COND = ["method=drifting", "data=digits", "method.encoder_path=null", "method.classes_per_step=4",
        "method.gen_per_class=4", "method.pos_per_class=4", "method.unc_per_class=2", "method.class_queue=8",
        "method.global_queue=16", "train.batch_size=16", "train.progress=false", "train.log_every=10",
        "eval.num_samples=20", "eval.batch_size=20", "eval.latency_repeats=0", "eval.guidance=[1.0]", "device=cpu"]


def _ckpt(results: Path, run: str) -> dict:
    return torch.load(results / "runs" / run / "checkpoints" / "last.pt", weights_only=False)


def _record(results: Path, run: str) -> dict:
    return json.loads((results / "records" / f"{run}.json").read_text())


def _squeue(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%t"], capture_output=True, text=True).stdout.strip()


class Submission:
    """``python -m bench.run`` submitting one SLURM job, in the background."""

    def __init__(self, results: Path, *args: str):
        self.results, self.log = results, results.parent / f"{results.name}.out"
        results.mkdir(parents=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.run", f"results_dir={results}", *SLURM, *args],
                                     cwd=ROOT, env=bench_env(), stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        self.job = self._wait(lambda: (re.search(r"as slurm job (\d+)", self.log.read_text()) or [None, None])[1])

    def _wait(self, get, timeout: float = 240):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = get()
            if value:
                return value
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.1)
        raise AssertionError(f"timed out; output so far:\n{self.log.read_text()}")

    def wait_checkpoint(self, run: str, step: int) -> None:
        path = self.results / "runs" / run / "checkpoints" / "last.pt"
        self._wait(lambda: path.exists() and _ckpt(self.results, run)["step"] >= step)

    def finish(self, timeout: float = 300) -> str:
        """Wait for the submitting command, starting the job again at once whenever it is requeued (SLURM
        holds a requeued job for two minutes)."""
        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            if _squeue(self.job) == "PD":
                subprocess.run(["scontrol", "update", f"jobid={self.job}", "StartTime=now"], capture_output=True)
            time.sleep(0.5)
        out = self.log.read_text()
        assert self.proc.poll() == 0, out
        return out


def test_a_sweep_through_the_hydra_submitit_launcher_lands_both_records(tmp_path):
    proc = run_bench(*SLURM, *TOY, "train.steps=20", "seed=0,1", results=tmp_path, timeout=400)   # -m implied
    assert re.search(r"bench.run: 2 job\(s\): 2 done", proc.stdout), proc.stdout
    assert len(re.findall(r"submitted job \d as slurm job \d+", proc.stdout)) == 2
    for seed in (0, 1):
        assert _record(tmp_path, f"drifting-ring8-mlp-s{seed}")["train"]["status"] == "finished"


def test_a_suite_is_one_job_array(tmp_path):
    suite = tmp_path / "mini.yaml"
    suite.write_text(json.dumps({"description": "two tiny runs", "overrides": [*TOY, "train.steps=20"],
                                 "jobs": [{"label": "drifting", "overrides": ["seed=0,1"]}]}))
    proc = subprocess.run([sys.executable, "-m", "bench.suite", str(suite), *SLURM, f"results_dir={tmp_path / 'results'}"],
                          cwd=ROOT, env=bench_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = re.findall(r"submitted job \d as slurm job (\d+)_(\d)", proc.stdout)
    assert len(ids) == 2 and ids[0][0] == ids[1][0], proc.stdout            # one array, two tasks
    assert "bench.suite: 2 job(s): 2 done" in proc.stdout
    assert all((tmp_path / "results" / "records" / f"drifting-ring8-mlp-s{s}.json").exists() for s in (0, 1))


def test_a_job_requeued_mid_training_resumes_and_equals_an_uninterrupted_run(tmp_path):
    run, args = "drifting-ring8-mlp-s0", [*TOY, "train.steps=400", "train.ckpt_every_steps=20"]
    run_bench(*args, results=tmp_path / "straight")
    job = Submission(tmp_path / "slurm", *args)
    job.wait_checkpoint(run, 40)
    subprocess.run(["scontrol", "requeue", job.job], check=True)
    job.finish()
    a, b = _ckpt(tmp_path / "straight", run), _ckpt(tmp_path / "slurm", run)
    assert b["step"] == 400 and all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])
    train = _record(tmp_path / "slurm", run)["train"]
    assert train["status"] == "finished" and train["resumes"] == 1 and train["lost_wall_seconds"] >= 0


def test_a_two_task_job_equals_one_process_also_across_a_preemption(tmp_path):
    run, args = "drifting-digits-mlp-s0", [*COND, "train.steps=150", "train.ckpt_every_steps=10"]
    run_bench(*args, results=tmp_path / "one")
    job = Submission(tmp_path / "two", *args, "hydra.launcher.tasks_per_node=2", "hydra.launcher.mem_gb=4")
    job.wait_checkpoint(run, 20)
    subprocess.run(["scancel", "--signal=USR2", job.job], check=True)   # the time-limit warning
    out = job.finish()
    a, b = _ckpt(tmp_path / "one", run), _ckpt(tmp_path / "two", run)
    for name in a["net"]:
        torch.testing.assert_close(a["net"][name], b["net"][name], rtol=1e-5, atol=DDP_ATOL, msg=name)
    qa, qb = a["method"]["queues"], b["method"]["queues"]
    assert all(torch.equal(qa[s][k], qb[s][k]) for s in qa for k in qa[s])
    record = _record(tmp_path / "two", run)
    assert record["env"]["world_size"] == 2 and record["train"]["resumes"] == 1, out
    log = "".join(p.read_text() for p in sorted((tmp_path / "two").rglob("*_0_log.*")))
    assert "preempted (SIGUSR2); checkpoint written" in log and "Requeued job" in log and "resuming from step" in log
