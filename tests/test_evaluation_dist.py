"""Evaluation over two gloo processes (torchrun, CPU) equals one process on the same samples; task=evaluate
on kept checkpoints; the refusals of task=evaluate (ConfigError: one line, exit 2 in bench.run)."""
import importlib.util
import json
import shutil

import numpy as np
import pytest

from tests.conftest import run_bench, run_torchrun

RUN = "drifting-ring8-mlp-s0"
TRAIN = ["train.steps=40", "train.batch_size=64", "train.ckpt_every_steps=10", "train.keep_checkpoints=2",
         "train.progress=false", "device=cpu"]
EVAL = ["eval.num_samples=301", "eval.batch_size=64", "eval.latency_repeats=0", "eval.metrics=[fd_raw,energy,w2]"]


def _record(results, run=RUN):
    return json.loads((results / "records" / f"{run}.json").read_text())


def _by_step(record):
    return {ev["checkpoint_step"]: ev for ev in record["evals"]}


@pytest.mark.slow
def test_two_processes_evaluate_kept_checkpoints_like_one(tmp_path):
    trained = tmp_path / "trained"
    run_bench(*TRAIN, *EVAL, results=trained)
    kept = sorted(p.name for p in (trained / "runs" / RUN / "checkpoints").iterdir())
    assert kept == ["last.pt", "step_00000030.pt", "step_00000040.pt"]        # keep_checkpoints=2
    record = _record(trained)
    record["evals"] = []                            # both copies evaluate every checkpoint afresh
    (trained / "records" / f"{RUN}.json").write_text(json.dumps(record))
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(trained, one)
    shutil.copytree(trained, two)
    run_bench("task=evaluate", f"run={RUN}", "eval.checkpoints=all", *EVAL, "device=cpu", results=one)
    run_torchrun("task=evaluate", f"run={RUN}", "eval.checkpoints=all", *EVAL, "device=cpu", results=two)
    a, b = _by_step(_record(one)), _by_step(_record(two))
    assert set(a) == set(b) == {None, 30}           # step 40 is the run's final weights: checkpoint_step null
    assert b[30]["timing"]["world_size"] == 2 and a[30]["timing"]["world_size"] == 1
    for step in (None, 30):
        assert a[step]["nfe_measured"] == b[step]["nfe_measured"] == 1
        for m, v in a[step]["metrics"].items():
            assert b[step]["metrics"][m] == pytest.approx(v, rel=1e-6, abs=1e-9), (step, m)
    assert a[30]["metrics"] != a[None]["metrics"]    # an earlier checkpoint is another network
    samples_1 = np.load(one / "runs" / RUN / "samples_ema_0.99_nfe1_g1.npy")
    samples_2 = np.load(two / "runs" / RUN / "samples_ema_0.99_nfe1_g1.npy")     # rank 0's share: the first 150
    assert len(samples_2) == 150
    np.testing.assert_allclose(samples_2, samples_1[:150], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_two_processes_write_the_same_adm_samples_and_neighbours_as_one(tmp_path):
    """Images never travel between processes: each rank writes its ADM part and searches its share of the
    training set for the memorisation check (with a tiny CLIP made here where transformers is installed)."""
    args = ["method=flow", "method.conditional=true", "data=digits", "model=dit_tiny", "train.steps=2",
            "train.batch_size=16", "train.progress=false", "eval.nfe=[2]", "eval.num_samples=37", "eval.batch_size=10",
            "eval.latency_repeats=0", "eval.metrics=[]", "eval.adm_samples=true", "eval.quantize=floor", "device=cpu"]
    clip = importlib.util.find_spec("transformers") is not None
    if clip:
        from tests.test_evaluation_memorisation import tiny_clip

        args += ["eval.memorisation=5", "eval.memorisation_k=3",
                 f"eval.memorisation_features=clip:{tiny_clip(tmp_path / 'clip')}"]
    one, two = tmp_path / "one", tmp_path / "two"
    run_bench(*args, results=one)
    shutil.copytree(one, two)
    (two / "records" / "flow-digits-dit_tiny-s0.json").unlink()
    run_torchrun("task=evaluate", "run=flow-digits-dit_tiny-s0", *args[5:], results=two)
    name = "samples_ema_0.99_nfe2_g1_n37.npz"
    za = np.load(one / "runs" / "flow-digits-dit_tiny-s0" / "adm" / name)
    zb = np.load(two / "runs" / "flow-digits-dit_tiny-s0" / "adm" / name)
    assert za["arr_0"].shape == (37, 8, 8, 3) and za["arr_0"].dtype == np.uint8
    np.testing.assert_array_equal(za["arr_1"], np.arange(37) % 10)
    np.testing.assert_array_equal(zb["arr_1"], za["arr_1"])
    diff = np.abs(za["arr_0"].astype(int) - zb["arr_0"].astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999      # float noise may flip a truncation, nothing more
    assert not (two / "runs" / "flow-digits-dit_tiny-s0" / "adm" / ".parts").exists()
    if clip:
        mem = "memorisation_ema_0.99_nfe2_g1_n37.npz"
        ma, mb = (np.load(r / "runs" / "flow-digits-dit_tiny-s0" / mem) for r in (one, two))
        assert ma["index"].shape == (5, 3) and (ma["index"] < 1797).all()
        np.testing.assert_array_equal(ma["index"], mb["index"])
        np.testing.assert_allclose(ma["similarity"], mb["similarity"], rtol=1e-5, atol=1e-6)


def test_task_evaluate_refuses_in_one_line(tmp_path):
    from bench.config import ConfigError, compose_config
    from bench.tasks import prepare

    base = ["task=evaluate", f"results_dir={tmp_path}"]
    with pytest.raises(ConfigError, match="run=nope: no run of that id in .*runs there: none"):
        prepare(compose_config([*base, "run=nope"]))
    with pytest.raises(ConfigError, match="eval.checkpoints: 'x'; choose last, all or a number"):
        prepare(compose_config([*base, "eval.checkpoints=x"]))
    with pytest.raises(ConfigError, match="has no checkpoint .* train it first .*task=train"):
        prepare(compose_config(base))
    assert not (tmp_path / "records").exists()
