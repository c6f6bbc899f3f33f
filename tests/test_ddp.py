"""Two gloo processes (torchrun) match one process with the same global batch."""
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import DDP_ATOL, ROOT, bench_env, run_bench

ARGS = ["train.steps=12", "train.batch_size=64", "method.group_size=16", "train.ckpt_every_steps=12",
        "train.progress=false", "eval.num_samples=64", "eval.batch_size=64", "eval.latency_repeats=0",
        "device=cpu"]


def _net(results):
    ck = results / "runs" / "drifting-ring8-mlp-s0" / "checkpoints" / "last.pt"
    return torch.load(ck, weights_only=False)["net"]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    torchrun = shutil.which("torchrun", path=str(__import__("pathlib").Path(sys.executable).parent))
    one, two = tmp_path / "one", tmp_path / "two"
    run_bench(*ARGS, results=one)
    cmd = [torchrun or "torchrun", "--standalone", "--nproc_per_node=2", "-m", "bench.run",
           f"results_dir={two}", *ARGS]
    proc = subprocess.run(cmd, cwd=ROOT, env=bench_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = _net(one), _net(two)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=DDP_ATOL, msg=name)
    rec = (two / "records" / "drifting-ring8-mlp-s0.json").read_text()
    assert '"world_size": 2' in rec
