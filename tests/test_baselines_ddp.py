"""Two gloo processes (torchrun) match one process with the same global batch, for the baselines too:
label dropout, times, noise and MeanFlow's r = t mask all come from ``batch.random``, and MeanFlow's
``torch.func.jvp`` runs through the DistributedDataParallel wrapper with gradients all-reduced."""
import pytest
import torch

from tests.conftest import DDP_ATOL, last_net, run_bench, run_torchrun

ARGS = ["train.steps=8", "train.batch_size=64", "train.ckpt_every_steps=8", "train.progress=false",
        "eval.num_samples=16", "eval.batch_size=16", "eval.latency_repeats=0", "eval.nfe=[2]", "device=cpu",
        "model.hidden=64", "method.conditional=true"]


@pytest.mark.slow
@pytest.mark.parametrize("method,extra", [("meanflow", ["method.omega=1.5"]), ("diffusion", [])])
def test_two_processes_match_one(tmp_path, method, extra):
    args = [f"method={method}", *ARGS, *extra]
    one, two = tmp_path / "one", tmp_path / "two"
    run_bench(*args, results=one)
    run_torchrun(*args, results=two)
    run_id = f"{method}-ring8-mlp-s0"
    a, b = last_net(one, run_id), last_net(two, run_id)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=DDP_ATOL, msg=name)
    assert '"world_size": 2' in (two / "records" / f"{run_id}.json").read_text()
