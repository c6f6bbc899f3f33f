"""The guidance sweep records its best; coarse-to-fine refines around the coarse best; FID-50K labels."""
import json

import numpy as np
import pytest
import torch

from bench.evaluation import labels, sweep
from methods.harness import checkpoint
from tests.conftest import run_bench

RUN = "flow-ring8-mlp-s0"
ARGS = ["method=flow", "method.conditional=true", "method.label_dropout=0.2", "train.steps=10", "train.batch_size=64",
        "train.progress=false", "eval.nfe=[2]", "eval.guidance=[1.0,1.5,2.0,3.0]", "eval.num_samples=200",
        "eval.batch_size=200", "eval.latency_repeats=0", "eval.metrics=[energy,fd_raw]", "device=cpu"]


def test_best_and_refine():
    assert sweep.best({1.0: 3.0, 1.5: 2.0, 2.0: None, 3.0: 2.0}) == (1.5, 2.0)       # ties: the smaller scale
    assert sweep.best({1.0: None}) is None
    grid = [1.0, 1.5, 2.0, 3.0]
    assert sweep.refine(grid, {1.0: 5, 1.5: 4, 2.0: 1, 3.0: 2}) == [1.5, 2.0, 3.0]
    assert sweep.refine(grid, {1.0: 1, 1.5: 4, 2.0: 5, 3.0: 6}) == [1.0, 1.5]
    assert sweep.refine(grid, {g: None for g in grid}) == grid
    assert sweep.scales_of([1.0], "release") == [1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5]
    assert sweep.scales_of([1.0], "ablation") == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    with pytest.raises(ValueError, match="unknown grid 'x'; choose one of: release, ablation, cfg"):
        sweep.scales_of([1.0], "x")
    assert sweep.search_metric(None, ["is", "fid", "energy"]) == "fid"
    assert sweep.search_metric(None, ["is", "precision"]) is None
    with pytest.raises(ValueError, match="not a lower-is-better metric"):
        sweep.search_metric("is", ["is"])


def test_fid50k_labels():
    bal = labels.eval_labels("balanced", 50_000, 1000)
    assert (torch.bincount(bal) == 50).all() and (bal[:1000] == torch.arange(1000)).all()
    blocks = labels.eval_labels("blocks", 50_000, 1000)
    assert (torch.bincount(blocks) == 50).all() and (blocks[:50] == 0).all() and blocks[50] == 1
    assert (torch.bincount(labels.eval_labels("blocks", 7, 3)) == torch.tensor([3, 3, 1])).all()


def test_label_files(tmp_path):
    np.savez(tmp_path / "adm.npz", arr_0=np.zeros((4, 2, 2, 3), np.uint8), arr_1=np.array([3, 1, 2, 0]))
    assert labels.eval_labels(str(tmp_path / "adm.npz"), 3, 4).tolist() == [3, 1, 2]
    (tmp_path / "l.txt").write_text("1\n0\n")
    assert labels.eval_labels(str(tmp_path / "l.txt"), 2, 2).tolist() == [1, 0]
    with pytest.raises(ValueError, match="holds 2 labels, fewer than eval.num_samples=3"):
        labels.eval_labels(str(tmp_path / "l.txt"), 3, 2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        labels.eval_labels(str(tmp_path / "adm.npz"), 4, 3)
    with pytest.raises(ValueError, match="no such file"):
        labels.eval_labels(str(tmp_path / "absent.npy"), 4, 3)


def test_keep_recent_checkpoints(tmp_path):
    last = tmp_path / "last.pt"
    for step in (10, 20, 30, 40):
        checkpoint.save_atomic({"step": step}, last)
        checkpoint.keep_recent(last, step, 2)
    assert [s for s, _ in checkpoint.kept_steps(tmp_path)] == [30, 40]
    assert checkpoint.load(checkpoint.step_file(tmp_path, 30))["step"] == 30     # not the later last.pt
    checkpoint.keep_recent(last, 50, 0)
    assert [s for s, _ in checkpoint.kept_steps(tmp_path)] == [30, 40]


def _record(results):
    return json.loads((results / "records" / f"{RUN}.json").read_text())


def test_coarse_to_fine_sweep_records_its_best(results):
    run_bench(*ARGS, "eval.search=coarse_to_fine", "eval.search_samples=60", "eval.search_metric=energy",
              results=results)
    record = _record(results)
    coarse = {ev["guidance"]: ev["metrics"]["energy"] for ev in record["evals"] if ev["n_samples"] == 60}
    fine = {ev["guidance"]: ev["metrics"]["energy"] for ev in record["evals"] if ev["n_samples"] == 200}
    assert sorted(coarse) == [1.0, 1.5, 2.0, 3.0]
    assert all(ev.get("search_stage") == "coarse" for ev in record["evals"] if ev["n_samples"] == 60)
    top = min(coarse, key=coarse.get)
    grid = [1.0, 1.5, 2.0, 3.0]
    i = grid.index(top)
    assert sorted(fine) == grid[max(0, i - 1): i + 2]
    (entry,) = record["sweeps"]
    assert entry["best_guidance"] == min(fine, key=fine.get) and entry["best_value"] == min(fine.values())
    assert entry["metric"] == "energy" and entry["search"] == "coarse_to_fine" and entry["n_samples"] == 200
    assert entry["at_best"]["fd_raw"] == next(ev["metrics"]["fd_raw"] for ev in record["evals"]
                                              if ev["n_samples"] == 200 and ev["guidance"] == entry["best_guidance"])
    again = run_bench(*ARGS, "eval.search=coarse_to_fine", "eval.search_samples=60", "eval.search_metric=energy",
                      results=results)
    assert "already complete" in again.stdout


def test_sweep_settings_are_checked_before_training():
    from bench.config import ConfigError, compose_config
    from bench.tasks import prepare

    cases = [("eval.search=coarse_to_fine", "eval.search=coarse_to_fine needs a metric to rank scales"),
             ("eval.guidance_grid=nope", "eval.guidance_grid: unknown grid 'nope'"),
             ("eval.search=fast", "eval.search: 'fast'; choose one of: grid, coarse_to_fine"),
             ("eval.quantize=up", "eval.quantize: 'up'; choose one of: round, floor"),
             ("eval.labels=blocks", None)]
    for override, message in cases:
        overrides = [*ARGS[:-2], "eval.metrics=[hq_frac]", override]
        if message is None:
            assert prepare(compose_config(overrides)).eval.labels == "blocks"
            continue
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            prepare(compose_config(overrides))
