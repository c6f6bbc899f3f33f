"""Run records: schema, atomic writes, tolerant reading, config diffs, eval bookkeeping."""
import json
import math
import subprocess
import sys

from bench import record as rec


def _record():
    r = rec.new_record("drifting-ring8-mlp-s0", {"method": {"name": "drifting"}, "train": {"lr": 1e-3}, "seed": 0},
                       {"device": "cpu"}, {"network": 10})
    r["evals"].append({"weights": "raw", "nfe": 1, "nfe_measured": 1.0, "guidance": 1.0, "n_samples": 5,
                       "seed": 0, "metrics": {"modes": 8.0}, "timing": {}})
    return r


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "records" / "a.json"
    rec.write_atomic(path, _record())
    back = rec.read(path)
    assert back["schema"] == rec.SCHEMA and back["evals"][0]["metrics"] == {"modes": 8.0}
    assert not list(path.parent.glob(".*.tmp"))


def _strict(text: str):
    """json.loads that refuses NaN/Infinity tokens, as strict JSON parsers (browsers, jq) do."""
    def refuse(token):
        raise ValueError(f"non-JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_are_strict_json_and_read_back_as_floats(tmp_path):
    path = tmp_path / "a.json"
    r = _record()
    r["evals"][0]["metrics"].update(fd_raw=float("nan"), energy=float("inf"))
    r["evals"][0]["timing"]["seconds_per_image"] = float("-inf")
    r["train"] = {"status": "diverged", "final_loss": float("nan")}
    r["config"]["tag"] = "nan"                  # a string that looks like one stays a string
    rec.write_atomic(path, r)
    raw = _strict(path.read_text())
    assert raw["evals"][0]["metrics"] == {"modes": 8.0, "fd_raw": "nan", "energy": "inf"}
    back = rec.read(path)
    m = back["evals"][0]["metrics"]
    assert math.isnan(m["fd_raw"]) and m["energy"] == math.inf and m["modes"] == 8.0
    assert back["evals"][0]["timing"]["seconds_per_image"] == -math.inf and math.isnan(back["train"]["final_loss"])
    assert back["config"]["tag"] == "nan"


def test_read_all_skips_bad_files_and_names_them(tmp_path):
    rec.write_atomic(tmp_path / "good.json", _record())
    (tmp_path / "torn.json").write_text('{"schema": 1, "run_')
    (tmp_path / "old.json").write_text(json.dumps({"schema": 0}))
    records, problems = rec.read_all(tmp_path)
    assert [r["run_id"] for r in records] == ["drifting-ring8-mlp-s0"]
    assert len(problems) == 2
    assert any("torn.json: not valid JSON" in p for p in problems)
    assert any("old.json: schema 0" in p for p in problems)


def test_config_diff_names_each_changed_leaf():
    old = {"train": {"lr": 1e-3, "steps": 10}, "seed": 0}
    new = {"train": {"lr": 2e-3, "steps": 10, "ema": [0.9]}, "seed": 0}
    assert rec.config_diff(old, new) == ["train.ema: '<absent>' -> [0.9]", "train.lr: 0.001 -> 0.002"]
    assert rec.config_diff(old, old) == []


def test_upsert_replaces_the_same_point():
    r = _record()
    entry = dict(r["evals"][0], metrics={"modes": 7.0})
    rec.upsert_eval(r, entry)
    assert len(r["evals"]) == 1 and r["evals"][0]["metrics"] == {"modes": 7.0}
    rec.upsert_eval(r, dict(entry, nfe=2))
    assert len(r["evals"]) == 2
    assert rec.find_eval(r, ("raw", 2, 1.0, 5, 0, "test"))["nfe"] == 2
    rec.upsert_eval(r, dict(entry, nfe=2, split="validation"))      # the same point on another split
    assert len(r["evals"]) == 3 and rec.find_eval(r, ("raw", 2, 1.0, 5, 0, "validation"))["split"] == "validation"


def test_record_module_does_not_import_torch():
    code = "import sys, bench.record; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bookkeeping_keys_are_not_part_of_the_training_identity():
    a = {"train": {"lr": 1e-3, "progress": True, "log_every": 5}, "seed": 0}
    b = {"train": {"lr": 1e-3, "progress": False, "log_every": 50}, "seed": 0}
    assert rec.config_diff(rec.training_identity(a), rec.training_identity(b)) == []


def test_the_reference_backdrop_asks_only_for_the_rows_it_keeps(tmp_path):
    import numpy as np

    from bench import artifacts
    asked = []

    def reference(rows):
        asked.append(rows)
        return np.zeros((rows, 3, 4, 4))
    path = artifacts.save_reference(tmp_path, reference, "images")
    artifacts.save_reference(tmp_path, reference, "images")          # already there: not asked again
    assert asked == [artifacts.REFERENCE_ROWS["images"]] and np.load(path).shape == (64, 3, 4, 4)
