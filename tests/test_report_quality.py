"""The report's quality-during-training figure (bench/report/figures_quality.py) and the release's
ablation trajectory beside a run in its setting (results/published/release_ablation_trajectory.csv)."""
from __future__ import annotations

import json

import pandas as pd

from bench import artifacts
from bench import record as rec
from bench.report import published as pub
from bench.report.figures import palette
from bench.report.figures_quality import quality_curves
from bench.report.load import load

ABLATION = {"method": {"name": "drifting"}, "data": {"name": "imagenet_latent"}, "model": {"name": "drift_b2"},
            "train": {"steps": 30000, "batch_size": 4096}, "seed": 0, "tag": None,
            "choices": {"method": "drifting", "data": "imagenet_latent", "model": "drift_b2"}}


def _run(results, run_id, config, rows):
    record = {**rec.new_record(run_id, config, {"device": "cpu"}, {"network": 1}), "train": {"status": "finished"}}
    rec.write_atomic(results / "records" / f"{run_id}.json", record)
    run_dir = results / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / artifacts.EVAL_LOG).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_trajectory_is_data_and_matches_only_its_setting():
    tables, problems = pub.load_published()
    assert problems == []
    (traj,) = [t for t in tables if pub.is_trajectory(t)]
    f = traj.frame.astype({"step": int, "fid": float})
    assert dict(zip(f["step"], f["fid"])) == {5000: 35.2, 10000: 13.33, 15000: 10.7, 20000: 9.47, 25000: 8.84,
                                               30000: 8.34}                      # PAPER.md 0.2, the README
    assert f["fid"].is_monotonic_decreasing
    assert [len(rows) for _, rows in pub.trajectories_for(ABLATION, tables)] == [6]
    assert pub.trajectories_for({**ABLATION, "model": {"name": "drift_l2"}}, tables) == []
    assert all(m["table"] != traj.table for m in pub.matches_for(ABLATION, tables))   # not a final number


def test_curves_collapse_notes_and_the_published_overlay(tmp_path):
    results = tmp_path / "results"
    toy = {**ABLATION, "data": {"name": "grid25"}, "model": {"name": "mlp"},
           "choices": {"method": "drifting", "data": "grid25", "model": "mlp"}}
    warn = "collapse warning at step {s} ({i:,} images): modes 1 of 25 (...)"
    _run(results, "toy", toy, [{"step": s, "images": s * 1024, "n_samples": 500, "modes": m, "energy": e,
                                "collapse": warn.format(s=s, i=s * 1024) if m < 12 else None}
                               for s, m, e in ((100, 1, 2.3), (200, 20, 0.1), (300, 25, 0.02))])
    _run(results, "abl", ABLATION, [{"step": s, "images": s * 4096, "n_samples": 500, "fid": f, "collapse": None}
                                    for s, f in ((5000, 60.0), (10000, 30.0))])
    res = load(results)
    runs = [{"run_id": "toy", "label": "toy", "seed": 0}, {"run_id": "abl", "label": "ablation", "seed": 0}]
    fig, notes = quality_curves(runs, res, palette(["toy", "ablation"]), "here", pub.load_published()[0])
    assert fig is not None and fig.uri.startswith("data:image/png;base64,")
    assert "modes" in fig.alt and "fid" in fig.alt and "1 check(s) warned" in fig.alt
    assert "Dashed: the release's ablation FID-50K" in fig.caption
    assert notes == ["toy: 1 of 3 checks, not the last one (first: modes 1 of 25 (...))"]
    assert quality_curves([{"run_id": "none", "label": "x", "seed": 0}], res, {}, "here", []) == (None, [])
    assert isinstance(res.evals, pd.DataFrame)
