"""Per-process checkpoint state and lost training time, in one process (the 2-process paths run in
tests/test_ddp_conditional.py and tests/test_slurm.py)."""
from __future__ import annotations

import json

import pytest
import torch

from methods.harness import rank_state
from methods.harness.dist import DistEnv
from methods.harness.trainer import ResumeError, TrainConfig, Trainer


def test_rank_files_are_kept_until_a_newer_step_is_committed(tmp_path):
    rank_state.save(tmp_path, 1, 4, {"q": torch.arange(3)})
    rank_state.save(tmp_path, 1, 8, {"q": torch.arange(5)})
    assert torch.equal(rank_state.restore(tmp_path, 1, 4)["q"], torch.arange(3))   # last.pt may still say step 4
    rank_state.prune(tmp_path, 1, 8)
    assert [p.name for p in tmp_path.iterdir()] == ["rank1-step8.pt"]
    with pytest.raises(FileNotFoundError, match="no state file for rank 0"):
        rank_state.restore(tmp_path, 0, 8)


def _trainer(run_dir):
    from bench.data import build_data
    from methods.backbones import build_backbone
    from methods.drifting.method import Drifting

    torch.manual_seed(0)
    data, method = build_data({"name": "ring8"}), Drifting(Drifting.Config())
    net = method.build(build_backbone({"name": "mlp", "hidden": 8, "depth": 1}, method.backbone_io(data.spec)),
                       data.spec)
    cfg = TrainConfig(steps=6, batch_size=16, progress=False, ckpt_every_steps=3, log_every=1)
    return Trainer(method, net, data, cfg, run_dir, 0, DistEnv(), log=lambda s: None)


def test_time_after_the_checkpoint_is_counted_as_lost_and_rank_states_need_their_world(tmp_path):
    first = _trainer(tmp_path)
    first.fit()
    ckpt = torch.load(first.ckpt_path, weights_only=False)
    ckpt.update(step=3, wall_seconds=10.0)                     # as if killed 2.5 s after the step-3 checkpoint
    torch.save(ckpt, first.ckpt_path)
    rows = [{"step": s, "wall_s": 10.0 + max(0, s - 3) * 1.25, "loss": 0.0} for s in range(1, 6)]
    first.log_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = _trainer(tmp_path)
    summary = again.fit()
    assert summary.resumes == 1 and summary.lost_wall_seconds == 2.5
    assert torch.load(again.ckpt_path, weights_only=False)["lost_wall_seconds"] == 2.5
    ckpt = torch.load(again.ckpt_path, weights_only=False)
    ckpt.update(step=3, method=None, method_ranks=2)            # written by 2 processes with their own queues
    torch.save(ckpt, again.ckpt_path)
    with pytest.raises(ResumeError, match="resume it with 2 processes"):
        _trainer(tmp_path).fit()
