"""Suites: the presets validate, a suite runs, resumes, refuses a bad job up front, and reports."""
import json
from pathlib import Path

import pytest

from bench import record as rec
from bench import suite as bs
from bench import suite_manifest as sm
from bench.config import ConfigError

SIZES = {"quick": 2, "toy": 45, "digits_cond": 84, "digits_uncond": 60, "claims": 210}


def test_presets_expand_to_the_documented_grids():
    assert set(sm.available_suites()) >= set(SIZES)
    for name, size in SIZES.items():
        jobs = bs.expand_jobs(bs.load_suite(bs.suite_file(name)), [])
        assert len(jobs) == size, name
        assert len({(j.label, tuple(j.overrides)) for j in jobs}) == size
        assert sm.available_suites()[name]                     # every preset describes itself


def test_every_preset_job_validates(tmp_path):
    cli = [f"results_dir={tmp_path}"]          # never compared with records of this checkout
    for name in SIZES:
        spec = bs.load_suite(bs.suite_file(name))
        before = [s for job in bs.expand_prepare(spec, cli) for s in bs.prepare_jobs([job])[0]]
        distinct = {}
        for job in bs.expand_jobs(spec, cli):                      # the seed never matters here
            distinct.setdefault(tuple(o for o in job.overrides if bs.override_key(o) != "seed"), job)
        # jobs that read what a prepare job writes (the digits encoders) are checked against its products
        bs.prepare_jobs(list(distinct.values()), bs.products(s for _, s in before))


def test_override_merging_and_suite_file_errors(tmp_path):
    assert bs.merge_overrides(["data=ring8", "seed=0,1"], ["data=grid25", "+x=1"]) == ["seed=0,1", "data=grid25", "+x=1"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\njobz: []\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['jobz'\]"):
        bs.load_suite(bad)
    bad.write_text("jobs:\n  - overrides: [method=drifting]\n")
    with pytest.raises(ConfigError, match="needs a 'label'"):
        bs.load_suite(bad)
    with pytest.raises(ConfigError, match="unknown suite 'nope'; choose one of: .*toy"):
        bs.suite_file("nope")
    spec = bs.load_suite(bs.suite_file("quick"))
    with pytest.raises(ConfigError, match="no such job label"):
        bs.expand_jobs(spec, [], only={"difusion"})


def _tiny_suite(tmp_path: Path, extra_job: str = "") -> Path:
    results = tmp_path / "results"
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""description: two seeds of a tiny drifting run and a kernel-normalisation variant
overrides: [method=drifting, data=ring8, "seed=0,1", train.steps=6, train.batch_size=32, train.ckpt_every_steps=3,
            train.log_every=2, train.progress=false, eval.num_samples=64, eval.batch_size=64,
            eval.latency_repeats=1, "eval.nfe=[1]", "results_dir={results}"]
jobs:
  - {{label: drifting, overrides: []}}
  - {{group: normalisation, label: softmax over x and y, overrides: []}}
  - {{group: normalisation, label: softmax over y, overrides: [method.kernel_norm=y, tag=knorm-y]}}
{extra_job}""")
    return path


def test_a_suite_runs_resumes_and_reports(tmp_path, capsys):
    path = _tiny_suite(tmp_path)
    results = tmp_path / "results"
    assert bs.main([str(path)]) == 0
    manifest = json.loads(sm.manifest_path(results, "tiny").read_text())
    assert len(manifest["jobs"]) == 6 and manifest["labels"] == ["drifting", "softmax over x and y", "softmax over y"]
    ids = sorted(p.stem for p in (results / "records").glob("*.json"))
    assert ids == ["drifting-ring8-mlp-s0", "drifting-ring8-mlp-s0-knorm-y", "drifting-ring8-mlp-s1",
                   "drifting-ring8-mlp-s1-knorm-y"]          # the default variant shares the plain run
    run_dir = results / "runs" / "drifting-ring8-mlp-s1-knorm-y"
    assert {"train_log.jsonl", "reference.npy", "samples_ema_0.99_nfe1_g1.npy"} <= {p.name for p in run_dir.iterdir()}
    capsys.readouterr()

    before = {i: rec.read(results / "records" / f"{i}.json")["updated"] for i in ids}
    assert bs.main([str(path)]) == 0                        # nothing left to do
    out = capsys.readouterr().out
    assert out.count("already complete, nothing to do") == 6
    assert before == {i: rec.read(results / "records" / f"{i}.json")["updated"] for i in ids}

    (results / "records" / "drifting-ring8-mlp-s1-knorm-y.json").unlink()      # as if stopped before its record
    assert bs.main([str(path), "--list"]) == 0
    assert "missing     drifting-ring8-mlp-s1-knorm-y" in capsys.readouterr().out
    log_rows = (run_dir / "train_log.jsonl").read_text()
    assert bs.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "resuming" not in out and out.count("already complete") == 5
    again = rec.read(results / "records" / "drifting-ring8-mlp-s1-knorm-y.json")
    assert again["train"]["steps"] == 6 and again["train"]["resumes"] == 0 and len(again["evals"]) == 1
    assert (run_dir / "train_log.jsonl").read_text() == log_rows      # the finished checkpoint was reused

    from bench.report import build_report
    index = build_report(results, tmp_path / "reports")
    page = (index.parent / "suite-tiny.html").read_text()
    assert "All 4 job(s) of this suite are done" in page
    assert "normalisation: ring8" in page and "softmax over y" in page


def test_a_bad_job_fails_in_one_line_before_anything_runs(tmp_path, capsys):
    path = _tiny_suite(tmp_path, "  - {label: broken, overrides: [train.lr=abc, tag=broken]}\n")
    assert bs.main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken" in err and "train.lr" in err
    assert not (tmp_path / "results").exists()


def test_one_run_id_with_two_training_configs_is_refused(tmp_path, capsys):
    path = _tiny_suite(tmp_path, "  - {label: longer, overrides: [train.steps=8]}\n")
    assert bs.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "both give run id 'drifting-ring8-mlp-s0' with different training configs" in err


@pytest.mark.slow
def test_prepare_jobs_run_first_and_unblock_the_jobs_that_need_them(tmp_path, capsys):
    results = tmp_path / "results"
    path = tmp_path / "enc.yaml"
    path.write_text("""description: drifting on digits in the features of an encoder the suite trains first
overrides: [data=digits, seed=0, train.steps=3, train.warmup_steps=0, train.progress=false, eval.num_samples=40,
            eval.batch_size=40, eval.latency_repeats=1, "eval.guidance=[1.0]", "eval.metrics=[]"]
prepare:
  - {label: encoder, overrides: [task=pretrain_encoder, data=digits, encoder.train.steps=6, encoder.cls_ft_steps=2,
                                 encoder.cls_warmup=1, encoder.train.batch_size=16, encoder.train.progress=false,
                                 encoder.eval_samples=32, encoder.train.warmup_steps=0]}
jobs:
  - {label: drifting, overrides: [method=drifting, "eval.nfe=[1]"]}
""")
    assert bs.main([str(path), f"results_dir={results}", "--list"]) == 0
    assert "1 wait for the prepare jobs" in capsys.readouterr().out
    assert bs.main([str(path), f"results_dir={results}"]) == 0
    out = capsys.readouterr().out
    assert out.index("prepare encoder") < out.index("[1/1] drifting")
    assert (results / "encoders" / "digits_tiny-digits-s0.pt").exists()
    assert [j["label"] for j in json.loads(sm.manifest_path(results, "enc").read_text())["jobs"]] == ["drifting"]
    assert rec.read(results / "records" / "drifting-digits-mlp-s0.json")["train"]["status"] == "finished"


def _pair_suite(tmp_path: Path, flow_extra: str, more: str = "") -> Path:
    path = tmp_path / "pair.yaml"
    path.write_text(f"""description: drifting against flow
overrides: [data=ring8, seed=0, "results_dir={tmp_path / 'results'}", train.steps=4, "eval.num_samples=64"]
{more}
jobs:
  - {{label: drifting, overrides: [method=drifting]}}
  - {{label: flow, overrides: [method=flow, "eval.nfe=[1]", {flow_extra}]}}
""")
    return path


@pytest.mark.parametrize("extra,key", [("eval.num_samples=128", "eval.num_samples"),
                                       ("train.batch_size=512", "images seen"),
                                       ("method.conditional=true", "method.conditional")])
def test_a_comparison_that_is_not_like_for_like_is_refused_naming_the_key(tmp_path, capsys, extra, key):
    path = _pair_suite(tmp_path, extra)
    assert bs.main([str(path), "--list"]) == 2
    err = capsys.readouterr().err
    assert "not like for like" in err and key in err and "drifting" in err and "flow" in err and "\n" not in err.strip()
    assert not (tmp_path / "results").exists()


def test_a_declared_difference_is_accepted_and_kept_in_the_manifest(tmp_path):
    path = _pair_suite(tmp_path, "eval.num_samples=128",
                       'differences: {n_samples: "flow gets more samples, for this test"}')
    spec = bs.load_suite(path)
    prepared, _ = bs.prepare_jobs(bs.expand_jobs(spec, []))
    bs.check_comparisons(prepared, spec)
    manifest = bs.build_manifest("pair", spec, prepared, [], None)
    assert manifest["differences"] == {"n_samples": "flow gets more samples, for this test"}
    from bench.report.sections import declared_differences
    assert declared_differences(manifest) == ["Declared difference between the compared jobs, n_samples: "
                                              "flow gets more samples, for this test"]
    bad = _pair_suite(tmp_path, "eval.num_samples=128", 'differences: {budget: "x"}')
    with pytest.raises(ConfigError, match="unknown key"):
        bs.check_comparisons(bs.prepare_jobs(bs.expand_jobs(bs.load_suite(bad), []))[0], bs.load_suite(bad))


def test_choose_weights_adds_a_validation_twin_of_every_job(tmp_path):
    path = _pair_suite(tmp_path, "eval.num_samples=64", "choose_weights: validation")
    jobs = bs.expand_jobs(bs.load_suite(path), [])
    assert len(jobs) == 4 and sum("eval.split=validation" in j.overrides for j in jobs) == 2
    prepared, _ = bs.prepare_jobs(jobs)
    assert len({s.run_id for _, s in prepared}) == 2                       # the twins share their runs
    assert sorted(bs.manifest_job(j, s)["split"] for j, s in prepared) == ["test", "test", "validation", "validation"]
