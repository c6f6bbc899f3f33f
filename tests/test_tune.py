"""``python -m bench.tune``: a study through Hydra's Optuna sweeper on the validation split, its resume (an
interrupted trial is queued again and does not count), the study as data, the winner's preset, and
one-line errors. Tiny budgets: the protocol's numbers are the configs' (bench/conf/tune/)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import tune_study as ts

TINY = ["method=flow", "data=ring8", "train.steps=3", "train.ckpt_every_steps=3", "eval.num_samples=64",
        "eval.batch_size=64", "tune.nfe=[1,2]", "tune.startup_trials=1", "model.hidden=16", "model.depth=1"]


def tune(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bench.tune", *TINY, f"results_dir={tmp_path / 'results'}", *extra,
           "--preset-dir", str(tmp_path / "presets")]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[1],
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=900)


@pytest.mark.slow
def test_a_study_runs_resumes_and_writes_its_preset(tmp_path):
    out = tune(tmp_path, "tune.trials=1")
    assert out.returncode == 0, out.stderr[-2000:]
    directory = tmp_path / "results" / "tune" / "flow_ring8"
    study = ts.load_study(ts.storage_url(directory), "flow_ring8")
    study.ask()                                    # a trial a killed process left RUNNING
    out = tune(tmp_path, "tune.trials=2")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "1/2 trial(s) done, 1 interrupted one(s) queued again" in out.stdout
    s = json.loads((directory / "study.json").read_text())
    assert s["budget"] == {"trials": 2, "counted": 2} and s["objective"]["split"] == "validation"
    assert [t["interrupted"] for t in s["trials"]] == [False, True, False]
    assert [t["counted"] for t in s["trials"]] == [True, False, True]
    done = [t for t in s["trials"] if t["state"] == "COMPLETE"]
    assert len({json.dumps(t["params"], sort_keys=True) for t in done}) == 2 and not any(t["repeat"] for t in done)
    for t in done:                                 # every kept weights evaluated at every tuning NFE
        assert set(t["points"]) == {"raw", "ema_0.99", "ema_0.999"} and set(t["points"]["raw"]) == {"1", "2"}
        mean = {w: sum(math.log10(max(p[n]["energy"], 1e-4)) for n in ("1", "2")) / 2 for w, p in t["points"].items()}
        assert t["value"] == pytest.approx(min(mean.values())) and mean[t["weights"]] == pytest.approx(t["value"])
        record = json.loads((directory / "records" / f"{t['run_id']}.json").read_text())
        assert record["config"]["seed"] == 100 and all(e["split"] == "validation" and e["seed"] == 5_000_000
                                                       for e in record["evals"])
    best = min(done, key=lambda t: t["value"])
    preset = yaml.safe_load((tmp_path / "presets" / "flow_ring8_tuned.yaml").read_text())
    assert preset["train"]["lr"] == pytest.approx(best["params"]["train.lr"])
    assert preset["method"]["time_dist"] == best["params"]["method.time_dist"]
    assert preset["eval"]["weights"] == [best["weights"]]
    out = tune(tmp_path, "tune.trials=1", "--export-only")        # cut to a smaller budget: the first trial
    assert out.returncode == 0, out.stderr[-2000:]
    s = json.loads((directory / "study.json").read_text())
    assert s["budget"]["counted"] == 1 and s["best"]["number"] == 0
    assert s["trials"][-1].get("beyond_budget") and not s["trials"][-1]["counted"]


def test_bad_input_fails_in_one_line(tmp_path):
    out = tune(tmp_path, "tune.trials=0")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "tune.trials" in out.stderr
    out = tune(tmp_path, "seed=3")
    assert out.returncode == 2 and "tune.seed" in out.stderr
    out = tune(tmp_path, "train.lr=abc")
    assert out.returncode == 2 and "train.lr" in out.stderr
    assert not (tmp_path / "results" / "tune" / "flow_ring8" / "study.db").exists()


def test_drifting_space_is_conditional_on_the_loss_and_valid_for_its_method(tmp_path):
    """Both branches sampled in one real Optuna study (which refuses a parameter whose choices change
    between trials), and every sampled combination composes into a config the drifting method accepts,
    on grid25 too (whose preset sets the production loss's affinity floor to 0)."""
    from bench.config import compose_config
    from bench.tasks import prepare
    from bench.tune_space import drifting
    from bench.tune_study import optuna

    study = optuna().create_study()
    for loss in ("production", "alg2", "production", "alg2"):
        study.enqueue_trial({"method.loss": loss})
        t = study.ask()
        t.suggest_categorical("method.loss", ["alg2", "production"])
        drifting(None, t)
        assert ("method.temperature" in t.params) == (loss == "alg2")
        assert ("method.temperatures" in t.params) == (loss == "production")
        prepare(compose_config(["method=drifting", "data=grid25", f"results_dir={tmp_path}",
                                *(f"{k}={v}" for k, v in t.params.items())]))
        study.tell(t, 0.0)


def test_the_preset_names_the_keys_a_branch_fixed_by_their_config_path(tmp_path):
    """A conditional branch's fixed value (``++method.affinity_clamp``) lands under method.affinity_clamp."""
    best = {"number": 7, "value": -2.0, "weights": "ema_0.99",
            "params": {"method.loss": "alg2", "++method.affinity_clamp": 1e-6, "train.lr": 0.002}}
    study = {"study": "drifting_grid25", "budget": {"trials": 16, "counted": 16},
             "objective": {"reduce": "mean", "nfe": [1], "weights": ["raw"]}}
    path = ts.write_preset(tmp_path, "drifting", "grid25", best, study)
    preset = yaml.safe_load(path.read_text())
    assert preset["method"] == {"loss": "alg2", "affinity_clamp": 1e-6} and preset["train"] == {"lr": 0.002}
    assert "Optuna trial #7, the best of 16 counted trials" in path.read_text()
