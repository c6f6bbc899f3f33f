"""Batch-wide S and lambda across processes: two gloo ranks, each with half of the groups, all-reducing
the sums, give exactly the single-process loss and gradients (methods/drifting/loss.py, sync_scales)."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from methods.drifting.loss import drift_loss
from methods.drifting.method import all_reduce_fn
from tests.conftest import last_net, run_bench, run_torchrun

RUN = "drifting-ring8-mlp-s0"


def _inputs():
    g = torch.Generator().manual_seed(0)
    gen = torch.randn(6, 10, 5, generator=g, dtype=torch.float64)
    pos = torch.randn(6, 8, 5, generator=g, dtype=torch.float64) + 0.5
    neg = torch.randn(6, 4, 5, generator=g, dtype=torch.float64)
    w_neg = torch.rand(6, 4, generator=g, dtype=torch.float64) * 3
    return gen, pos, neg, w_neg


def _rank(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    gen, pos, neg, w_neg = _inputs()
    sl = slice(3 * rank, 3 * rank + 3)
    x = gen[sl].clone().requires_grad_()
    loss, info = drift_loss(x, pos[sl], neg[sl], w_neg=w_neg[sl], all_reduce=all_reduce_fn(True))
    loss.sum().backward()
    torch.save({"loss": loss.detach(), "grad": x.grad, "scale": info["scale"]}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_all_reduced_scales_match_one_process(tmp_path):
    out = str(tmp_path / "r")
    mp.start_processes(_rank, args=(f"file://{tmp_path / 'init'}", out), nprocs=2, start_method="spawn")
    gen, pos, neg, w_neg = _inputs()
    x = gen.clone().requires_grad_()
    loss, info = drift_loss(x, pos, neg, w_neg=w_neg)
    loss.sum().backward()
    parts = [torch.load(f"{out}.{r}") for r in range(2)]
    torch.testing.assert_close(torch.cat([p["loss"] for p in parts]), loss.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.cat([p["grad"] for p in parts]), x.grad, rtol=1e-12, atol=1e-15)
    assert all(torch.allclose(p["scale"], info["scale"], rtol=1e-12) for p in parts)


@pytest.mark.slow
def test_two_processes_match_one_with_the_production_loss(tmp_path):
    """As tests/test_ddp.py, with the production loss: two ranks with all-reduced S and lambda end within
    fp32 rounding (amplified by 8 Adam steps) of one process; without the all-reduce they do not."""
    args = ["method.loss=production", "method.affinity_clamp=0", "train.steps=8", "train.batch_size=64",
            "method.group_size=16", "train.ckpt_every_steps=8", "train.progress=false", "eval.num_samples=64",
            "eval.batch_size=64", "eval.latency_repeats=0", "device=cpu"]
    run_bench(*args, results=tmp_path / "one")

    def two(name: str, *extra: str) -> dict:
        run_torchrun(*args, *extra, results=tmp_path / name)
        return last_net(tmp_path / name, RUN)

    a, synced, unsynced = last_net(tmp_path / "one", RUN), two("two"), two("nosync", "method.sync_scales=false")
    err = max(float((a[k] - synced[k]).abs().max()) for k in a)
    err_nosync = max(float((a[k] - unsynced[k]).abs().max()) for k in a)
    assert err < 2e-5 and err_nosync > 10 * err, (err, err_nosync)

