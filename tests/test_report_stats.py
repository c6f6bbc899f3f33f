"""Aggregation, intervals, the Pareto front, the one-step comparison and the metric table (no torch)."""
import math

import numpy as np
import pandas as pd
import pytest

from bench.report import metric_info as mi
from bench.report import stats
from bench.report.load import METRIC_PREFIX


def test_t_interval_matches_the_textbook_value():
    # mean 2, sd 1, n 3: t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3)
    assert stats.t_half_width([1.0, 2.0, 3.0]) == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert math.isnan(stats.t_half_width([5.0]))
    assert math.isnan(stats.t_half_width([5.0, float("nan")]))       # one finite value: no interval


def _evals(rows):
    base = {"weights": "ema_0.99", "guidance": 1.0, "method": "m", "device": "cpu", "train_status": "finished",
            "nfe_measured": None, "seconds_per_image": 1e-3, "images_per_second": 1e3, "latency_batch1_seconds": 1e-3,
            "params": 10, "images_seen": 100, "train_wall_seconds": 1.0, "gpu_hours": 0.0}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_summarize_groups_seeds_and_keeps_label_order():
    df = _evals([{"label": "flow", "nfe": 4, "seed": s, "run_id": f"f{s}", METRIC_PREFIX + "energy": v}
                 for s, v in enumerate([1.0, 2.0, 3.0])] +
                [{"label": "drifting", "nfe": 1, "seed": 0, "run_id": "d0", METRIC_PREFIX + "energy": 0.5}])
    s = stats.summarize(df, ["energy"])
    assert list(s["label"]) == ["flow", "drifting"]                    # first appearance, not alphabetical
    flow = s.iloc[0]
    assert flow["n_seeds"] == 3 and flow["energy"] == pytest.approx(2.0)
    assert flow["energy ±"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert flow["runs"] == [("0", "f0"), ("1", "f1"), ("2", "f2")]
    assert math.isnan(s.iloc[1]["energy ±"])


def test_pareto_front_respects_the_metric_direction():
    t = [1.0, 2.0, 3.0, 4.0]
    lower = [5.0, 3.0, 4.0, 1.0]                  # point 2 is dominated by point 1 (faster and better)
    assert list(stats.pareto_front(t, lower, "energy")) == [True, True, False, True]
    higher = [5.0, 3.0, 4.0, 1.0]                 # for 'modes' higher is better: only the first survives
    assert list(stats.pareto_front(t, higher, "modes")) == [True, False, False, False]
    assert list(stats.pareto_front([1.0, np.nan], [1.0, 0.0], "energy")) == [True, False]


def test_one_step_comparison_finds_the_nfe_that_reaches_drifting():
    df = _evals([{"label": "drifting", "nfe": 1, "seed": 0, "run_id": "d", METRIC_PREFIX + "fid": 5.0}] +
                [{"label": "flow", "nfe": n, "seed": 0, "run_id": "f", "seconds_per_image": 1e-3 * n,
                  METRIC_PREFIX + "fid": 20.0 / n} for n in (1, 2, 4, 8)] +
                [{"label": "ode", "nfe": n, "seed": 0, "run_id": "o", METRIC_PREFIX + "fid": 9.0} for n in (1, 2)])
    rows = {r["label"]: r for r in stats.one_step_comparison(stats.summarize(df, ["fid"]), "fid")}
    assert rows["drifting"]["is_reference"] and rows["drifting"]["ref_value"] == 5.0
    assert rows["flow"]["match_nfe"] == 4 and rows["flow"]["match_seconds"] == pytest.approx(4e-3)
    assert rows["flow"]["best"] == 2.5 and rows["flow"]["best_nfe"] == 8
    assert rows["ode"]["match_nfe"] is None
    assert stats.one_step_comparison(stats.summarize(df, ["fid"]), "mystery") == []   # no direction


def test_metric_table_directions_floors_and_unknowns():
    assert mi.direction("fid") == "lower" and mi.direction("recall") == "higher"
    assert mi.direction("energy_floor") is None and mi.is_floor("energy_floor")
    assert mi.direction("brand_new_metric") is None
    assert "direction unknown" in mi.info("brand_new_metric").about
    assert mi.ordered(["zeta", "energy_floor", "modes", "energy"]) == ["modes", "energy", "energy_floor", "zeta"]
    assert mi.primary(["modes", "energy"]) == "energy"
    assert mi.direction("precision_domain") == "higher" and mi.info("kid_raw").label == "KID (raw)"
    assert mi.ordered(["recall_domain", "fd_domain", "precision"]) == ["fd_domain", "precision", "recall_domain"]
    assert mi.better("fid", 1.0, 2.0) and mi.better("recall", 0.9, 0.5) and not mi.better("fid", 3.0, 2.0)


def test_mode_counts_agree_with_the_data_sets():
    from bench.data import build_data
    from bench.report.figures import MODE_COUNTS
    for name, count in MODE_COUNTS.items():
        data = build_data({"name": name, "n_train": 16})
        assert data.spec.num_classes == count, name


def test_guidance_scales_get_their_own_lines():
    from bench.report import figures as fg
    df = _evals([{"label": "flow", "nfe": n, "guidance": g, "seed": 0, "run_id": "r", "nfe_measured": n * (1 + (g > 1)),
                  METRIC_PREFIX + "fid": 10 / n / g} for g in (1.0, 2.0) for n in (1, 2, 4)])
    s = stats.summarize(df, ["fid"])
    assert [name for (_, name), _ in fg.series(s)] == ["flow (guidance 1)", "flow (guidance 2)"]
    fig = fg.quality_vs_nfe(s, ["fid"], fg.palette(["flow"]), "toy")
    assert "flow (guidance 2) 5 at NFE 2 to 1.25 at NFE 8" in fig.alt and fig.uri.startswith("data:image/png;base64,")


def test_names_come_from_the_chosen_config_files():
    from bench.suite_manifest import choice
    assert choice({"choices": {"model": "dit_digits"}, "model": {"name": "dit"}}, "model") == "dit_digits"
    assert choice({"model": {"name": "dit"}}, "model") == "dit"            # records written before choices
    assert choice({}, "model") is None
