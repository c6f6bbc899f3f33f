"""Shared fixtures: run ``python -m bench.run`` in a subprocess against a temporary results folder."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A small, fast toy run used by the harness tests (seconds on 2 cores).
FAST = ["train.steps=40", "train.batch_size=128", "train.ckpt_every_steps=10", "train.log_every=5",
        "train.progress=false", "eval.num_samples=300", "eval.batch_size=300", "eval.latency_repeats=1"]
# DDP vs one process: Adam at lr 3e-3 amplifies float32 reduction-order noise (gradients averaged by
# all-reduce) to ~3e-6 in a few steps; a real mismatch (drifting grouped 32 instead of 64 per group)
# moves weights by ~3e-2.
DDP_ATOL = 5e-5


def bench_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def run_bench(*args: str, results: Path, module: str = "bench.run", check: bool = True, timeout: int = 600,
              extra_env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, f"results_dir={results}", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env={**bench_env(), **(extra_env or {})}, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_torchrun(*args: str, results: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc -m bench.run`` (gloo on CPU), asserting success."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "bench.run", f"results_dir={results}", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=bench_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def last_net(results: Path, run_id: str) -> dict:
    """The network weights of a run's last checkpoint."""
    import torch
    return torch.load(results / "runs" / run_id / "checkpoints" / "last.pt", weights_only=False)["net"]


def assert_stopped_run_resumes_exactly(fit, tmp_path: Path, stop_at: int) -> None:
    """``fit(run_dir, hooks=()) -> (trainer, summary)``: a run that a hook stops after step ``stop_at``,
    resumed from its checkpoint, ends with the weights of an uninterrupted run."""
    import torch

    def stop(t):
        if t.step == stop_at:
            t.stop_reason = "asked by a hook"

    _, first = fit(tmp_path / "a", (stop,))
    assert (first.status, first.steps) == ("partial", stop_at)
    resumed, second = fit(tmp_path / "a")
    straight, _ = fit(tmp_path / "b")
    assert second.status == "finished" and second.resumes == 1
    for name, p in straight.net.state_dict().items():
        assert torch.equal(p, resumed.net.state_dict()[name]), name


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"
