"""Two gloo processes (torchrun) match one process with the same global batch."""
import pytest
import torch

from tests.conftest import DDP_ATOL, last_net, run_bench, run_torchrun

ARGS = ["train.steps=12", "train.batch_size=64", "method.group_size=16", "train.ckpt_every_steps=12",
        "train.progress=false", "eval.num_samples=64", "eval.batch_size=64", "eval.latency_repeats=0",
        "device=cpu"]
RUN = "drifting-ring8-mlp-s0"


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_bench(*ARGS, results=one)
    run_torchrun(*ARGS, results=two)
    a, b = last_net(one, RUN), last_net(two, RUN)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=DDP_ATOL, msg=name)
    assert '"world_size": 2' in (two / "records" / f"{RUN}.json").read_text()
