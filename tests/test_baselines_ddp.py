"""Two gloo processes (torchrun) match one process with the same global batch, for the baselines too:
label dropout, times, noise and MeanFlow's r = t mask all come from ``batch.random``, and MeanFlow's
``torch.func.jvp`` runs through the DistributedDataParallel wrapper with gradients all-reduced."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import DDP_ATOL, ROOT, bench_env, run_bench

ARGS = ["train.steps=8", "train.batch_size=64", "train.ckpt_every_steps=8", "train.progress=false",
        "eval.num_samples=16", "eval.batch_size=16", "eval.latency_repeats=0", "eval.nfe=[2]", "device=cpu",
        "model.hidden=64", "method.conditional=true"]


@pytest.mark.slow
@pytest.mark.parametrize("method,extra", [("meanflow", ["method.omega=1.5"]), ("diffusion", [])])
def test_two_processes_match_one(tmp_path, method, extra):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    args = [f"method={method}", *ARGS, *extra]
    one, two = tmp_path / "one", tmp_path / "two"
    run_bench(*args, results=one)
    cmd = [torchrun or "torchrun", "--standalone", "--nproc_per_node=2", "-m", "bench.run",
           f"results_dir={two}", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=bench_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = f"{method}-ring8-mlp-s0"
    a, b = (torch.load(r / "runs" / run_id / "checkpoints" / "last.pt", weights_only=False)["net"] for r in (one, two))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=DDP_ATOL, msg=name)
    assert '"world_size": 2' in (two / "records" / f"{run_id}.json").read_text()
