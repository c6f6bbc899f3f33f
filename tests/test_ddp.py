"""Two gloo processes (torchrun) match one process with the same global batch, with the default drifting
config: its one group is the whole global batch, gathered over the processes (methods/drifting/groups.py)."""
import json

import pytest
import torch

from tests.conftest import DDP_ATOL, last_net, run_bench, run_torchrun

ARGS = ["train.steps=12", "train.batch_size=64", "train.ckpt_every_steps=12", "train.log_every=1",
        "train.progress=false", "eval.num_samples=64", "eval.batch_size=64", "eval.latency_repeats=0",
        "device=cpu"]
RUN = "drifting-ring8-mlp-s0"


def _losses(results):
    rows = (results / "runs" / RUN / "train_log.jsonl").read_text().splitlines()
    return torch.tensor([json.loads(r)["loss"] for r in rows], dtype=torch.float64)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_bench(*ARGS, results=one)
    run_torchrun(*ARGS, results=two)
    a, b = last_net(one, RUN), last_net(two, RUN)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=DDP_ATOL, msg=name)
    torch.testing.assert_close(_losses(one), _losses(two), rtol=5e-3, atol=0)   # the same loss, step by step (Adam amplifies rounding)
    record = json.loads((two / "records" / f"{RUN}.json").read_text())
    assert record["env"]["world_size"] == 2 and record["env"]["world_size_invariant"]
    assert record["env"]["per_process_batch"] == 32
