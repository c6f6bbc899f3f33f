"""What the evaluation protocol adds to the report, from records written here: the guidance curve with its
best, quality over training, the memorisation grid and the cost table; coarse and earlier-checkpoint points
stay out of the summary table."""
import re

import numpy as np

from bench import record as rec
from bench.report import build_report
from bench.report.load import load
from tests.test_report import Page

GRID = [1.0, 1.5, 2.0, 3.0]
FID = {1.0: 9.0, 1.5: 7.0, 2.0: 8.0, 3.0: 12.0}


def _ev(g, n, fid, step=None, stage=None, minutes=0.5):
    ev = {"weights": "ema_0.999", "nfe": 1, "nfe_measured": 1.0, "guidance": g, "n_samples": n, "seed": 0,
          "checkpoint_step": step, "metrics": {"fid": fid, "is": 100 + 20 * g}, "metric_sources": {},
          "timing": {"seconds_per_image": 1e-3, "images_per_second": 1000.0, "device": "cuda:0", "world_size": 8,
                     "samples_per_second_per_process": 900.0, "feature_images_per_second_per_process": {"inception": 800.0},
                     "point_wall_seconds": 60 * minutes / 8, "device_minutes": minutes}}
    return {**ev, **({"search_stage": stage} if stage else {})}


def test_evaluation_figures_and_cost_table(tmp_path):
    results = tmp_path / "results"
    record = rec.new_record("drifting-imagenet-b2-s0", {"seed": 0, "choices": {"method": "drifting", "data": "imagenet",
                                                                              "model": "drift_b2"}}, {"device": "cuda"},
                            {"network": 10})
    record["train"] = {"status": "finished", "steps": 300, "images_seen": 1000, "wall_seconds": 10.0}
    record["evals"] = ([_ev(g, 100, FID[g] + 5, stage="coarse", minutes=0.01) for g in GRID]
                       + [_ev(g, 1000, FID[g]) for g in (1.0, 1.5, 2.0)]
                       + [_ev(1.5, 1000, 30.0, step=100), _ev(1.5, 1000, 15.0, step=200)])
    record["sweeps"] = [{"weights": "ema_0.999", "nfe": 1, "checkpoint_step": None, "n_samples": 1000, "seed": 0,
                         "metric": "fid", "search": "coarse_to_fine", "grid": GRID,
                         "values": {"1": 9.0, "1.5": 7.0, "2": 8.0}, "coarse": {f"{g:g}": FID[g] + 5 for g in GRID},
                         "best_guidance": 1.5, "best_value": 7.0}]
    run_dir = results / "runs" / "drifting-imagenet-b2-s0"
    run_dir.mkdir(parents=True)
    q = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    np.savez(run_dir / "memorisation_x.npz", queries=q, neighbours=np.stack([q, q], 1), similarity=np.full((2, 2), 0.5),
             index=np.zeros((2, 2), int))
    record["evals"][5]["memorisation"] = {"file": "memorisation_x.npz", "extractor": "clip", "n_queries": 2, "k": 2}
    rec.write_atomic(results / "records" / "drifting-imagenet-b2-s0.json", record)
    page = Page(build_report(results, tmp_path / "out").parent / "suite-other-runs.html")
    alts = " | ".join(i.get("alt", "") for i in page.imgs)
    assert "best FID 7 at guidance 1.5" in alts and "best IS 160 at guidance 3" not in alts
    assert re.search(r"FID against training step.*30 at step 100 to 7 at step 300", alts)
    assert "nearest training images with cosine similarities" in alts
    text = page.plain
    assert "What evaluation costs" in text
    assert "one FID-50K point" in text and "25 GPU-min" in text          # 0.5 device-min x 50,000 / 1,000
    assert "175 GPU-min (7 points)" in text                              # 3 fine + 4 coarse points of the sweep
    rows = load(results).evals                     # the summary table's rows: final weights, full sample count
    assert sorted(rows["guidance"]) == [1.0, 1.5, 2.0] and set(rows["n_samples"]) == {1000}
