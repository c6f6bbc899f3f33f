"""Class-conditional drifting on 2 gloo processes (torchrun): the global N_c is split over the processes
and every draw is keyed by global index, so with ``queue_fill=global`` 2 processes train what 1 process
trains (weights to float rounding, queues bitwise); with the release's per-process queues
(``queue_fill=local``) every rank's queues are checkpointed by rank, and a run killed with SIGKILL and
resumed ends equal to an uninterrupted one, queues included."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import DDP_ATOL, ROOT, bench_env, run_bench, run_torchrun

RUN = "drifting-digits-mlp-s0"
ARGS = ["method=drifting", "data=digits", "method.encoder_path=null", "method.classes_per_step=4",
        "method.gen_per_class=4", "method.pos_per_class=4", "method.unc_per_class=2", "method.class_queue=8",
        "method.global_queue=16", "train.batch_size=16", "train.ckpt_every_steps=3", "train.log_every=1",
        "train.progress=false", "eval.num_samples=20", "eval.batch_size=20", "eval.latency_repeats=0",
        "eval.guidance=[1.0]", "device=cpu"]


def _ckpt(results: Path, name: str = "last.pt") -> dict:
    return torch.load(results / "runs" / RUN / "checkpoints" / name, weights_only=False)


def _queues_equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[s][k], b[s][k]) for s in ("classes", "unconditional") for k in a[s])


@pytest.mark.slow
def test_two_processes_match_one_with_queues(tmp_path):
    args = [*ARGS, "train.steps=8"]
    run_bench(*args, results=tmp_path / "one")
    run_torchrun(*args, results=tmp_path / "two")
    a, b = _ckpt(tmp_path / "one"), _ckpt(tmp_path / "two")
    for name in a["net"]:
        torch.testing.assert_close(a["net"][name], b["net"][name], rtol=1e-5, atol=DDP_ATOL, msg=name)
    assert _queues_equal(a["method"]["queues"], b["method"]["queues"])
    record = json.loads((tmp_path / "two" / "records" / f"{RUN}.json").read_text())
    assert record["env"]["world_size_invariant"] and record["env"]["world_size_note"] is None


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _torchrun_killed_after(results: Path, args: list[str], step: int, total: int) -> int:
    """Start a 2-process run, SIGKILL all of it once a checkpoint of ``step`` or later exists."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    proc = subprocess.Popen([torchrun, "--standalone", "--nproc_per_node=2", "-m", "bench.run",
                             f"results_dir={results}", *args], cwd=ROOT, env=bench_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = results / "runs" / RUN / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and _ckpt(results)["step"] >= step:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    for pid in [proc.pid, *_descendants(proc.pid)]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1)                                                 # let the killed workers go
    killed_at = _ckpt(results)["step"]
    assert step <= killed_at < total
    return killed_at


@pytest.mark.slow
def test_killed_two_process_run_with_per_process_queues_resumes_exactly(tmp_path):
    total = 60
    args = [*ARGS, f"train.steps={total}", "method.queue_fill=local"]
    run_torchrun(*args, results=tmp_path / "straight")
    killed_at = _torchrun_killed_after(tmp_path / "killed", args, 6, total)
    one = run_bench(*args, results=tmp_path / "killed", check=False)      # 1 process cannot take 2 ranks' queues
    assert one.returncode == 1 and "resume it with 2 processes" in one.stderr.strip().splitlines()[-1]
    out = run_torchrun(*args, results=tmp_path / "killed")
    assert f"resuming from step {killed_at}" in out.stdout
    a, b = _ckpt(tmp_path / "straight"), _ckpt(tmp_path / "killed")
    assert a["method"] is None and a["method_ranks"] == 2 and b["step"] == total
    for name in a["net"]:
        assert torch.equal(a["net"][name], b["net"][name]), name
    queues = [[_ckpt(d, f"rank{r}-step{total}.pt")["method"]["queues"] for r in (0, 1)]
              for d in (tmp_path / "straight", tmp_path / "killed")]
    assert _queues_equal(queues[0][0], queues[1][0]) and _queues_equal(queues[0][1], queues[1][1])
    assert not _queues_equal(queues[0][0], queues[0][1])          # each rank filled its own queues
    assert sorted(p.name for p in (tmp_path / "killed" / "runs" / RUN / "checkpoints").glob("rank*")) == [
        f"rank0-step{total}.pt", f"rank1-step{total}.pt"]
    record = json.loads((tmp_path / "killed" / "records" / f"{RUN}.json").read_text())
    assert record["train"]["resumes"] == 1 and not record["env"]["world_size_invariant"]
    assert "queue_fill=local" in record["env"]["world_size_note"]
