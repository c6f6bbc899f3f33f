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


def _seeds(label, values, metric="reverse_kl", nfe=1, **extra):
    return [{"label": label, "nfe": nfe, "seed": s, "run_id": f"{label}{s}", METRIC_PREFIX + metric: v, **extra}
            for s, v in enumerate(values)]


def test_a_collapsed_seed_is_never_dropped_from_a_mean():
    """reverse KL is missing exactly when a seed has no high-quality sample: 2 of 3 collapsed must not
    show the third seed's value as the mean."""
    from bench.report.tables import metric_cell

    s = stats.summarize(_evals(_seeds("a", [0.005, np.nan, np.nan]) + _seeds("b", [0.005, 0.01, np.nan], nfe=2)
                               + _seeds("c", [0.1, 0.2, 0.3], nfe=4)), ["reverse_kl"])
    a, b, c = (s.iloc[i] for i in range(3))
    assert math.isnan(a["reverse_kl"]) and a["reverse_kl bad"] == 2 and a["reverse_kl n"] == 3
    assert metric_cell(a, "reverse_kl").text == "2 of 3 seeds collapsed; median collapsed"
    assert metric_cell(b, "reverse_kl").text == "1 of 3 seeds collapsed; median 0.01"
    assert c["reverse_kl"] == pytest.approx(0.2) and c["reverse_kl median"] == pytest.approx(0.2)
    assert metric_cell(c, "reverse_kl").text.startswith("0.2 ± ")
    hq = stats.summarize(_evals(_seeds("a", [0.5, np.nan, 0.7], metric="hq_frac")), ["hq_frac"]).iloc[0]
    assert hq["hq_frac median"] == 0.5                    # higher is better: collapsed counts as -inf


def test_a_diverged_run_counts_as_a_collapsed_seed():
    df = _evals(_seeds("drifting", [0.01, 0.02], metric="energy"))
    s = stats.summarize(df, ["energy"], failed={"drifting": [("2", "drifting2")]}).iloc[0]
    assert s["n_seeds"] == 3 and s["energy bad"] == 1 and math.isnan(s["energy"])
    assert ("2", "drifting2") in s["runs"] and s["energy median"] == 0.02


def test_a_metric_from_different_extractor_weights_is_not_averaged():
    from bench.report.load import WEIGHTS_PREFIX
    from bench.report.tables import metric_cell

    rows = _seeds("a", [1.0, 2.0, 3.0], metric="fd_domain")
    for r, h in zip(rows, ["aaa", "aaa", "bbb"]):
        r[WEIGHTS_PREFIX + "fd_domain"] = h
    s = stats.summarize(_evals(rows), ["fd_domain"]).iloc[0]
    assert math.isnan(s["fd_domain"]) and metric_cell(s, "fd_domain").text == "not averaged"
    for r in rows:
        r[WEIGHTS_PREFIX + "fd_domain"] = "aaa"
    assert stats.summarize(_evals(rows), ["fd_domain"]).iloc[0]["fd_domain"] == pytest.approx(2.0)


def test_winners_only_where_intervals_separate():
    sep = _evals(_seeds("drifting", [1.0, 1.1, 0.9], "energy") + _seeds("flow", [2.0, 2.1, 1.9], "energy", nfe=8)
                 + _seeds("flow", [5.0, 5.1, 4.9], "energy", nfe=1))
    w = stats.winner(stats.summarize(sep, ["energy"]), "energy")
    assert w["winner"] == "drifting" and [b["label"] for b in w["best"]] == ["drifting", "flow"]
    assert w["best"][1]["nfe"] == 8                       # each method's best point
    tie = _evals(_seeds("drifting", [1.0, 1.5, 0.5], "energy") + _seeds("flow", [1.2, 1.3, 1.1], "energy", nfe=8))
    w = stats.winner(stats.summarize(tie, ["energy"]), "energy")
    assert w["winner"] is None and w["tie"] == ["drifting", "flow"] and "overlap" in w["reason"]
    w = stats.winner(stats.summarize(sep, ["energy"]), "energy", floor_spread=0.6)
    assert w["winner"] is None and "floor" in w["reason"]
    one = _evals(_seeds("drifting", [1.0], "energy") + _seeds("flow", [9.0], "energy", nfe=8))
    assert stats.winner(stats.summarize(one, ["energy"]), "energy")["winner"] is None   # one seed: no interval
    alone = stats.winner(stats.summarize(_evals(_seeds("flow", [2.0, 2.1, 1.9], "energy")), ["energy"]), "energy")
    assert alone["winner"] is None and "only one method" in alone["reason"]
    gone = _evals(_seeds("drifting", [np.nan, np.nan], "energy") + _seeds("flow", [2.0, 2.2], "energy", nfe=8))
    w = stats.winner(stats.summarize(gone, ["energy"]), "energy")
    assert w["best"][-1]["collapsed"] and w["winner"] == "flow"


def test_best_mark_only_for_a_separated_row_and_floor_marks():
    from bench.report import tables

    sep = stats.summarize(_evals(_seeds("drifting", [1.0, 1.1, 0.9], "energy")
                                 + _seeds("flow", [2.0, 2.1, 1.9], "energy", nfe=8)), ["energy"])
    assert tables._best_index(sep, "energy") == 0
    tie = stats.summarize(_evals(_seeds("drifting", [1.0, 1.5, 0.5], "energy")
                                 + _seeds("flow", [1.2, 1.3, 1.1], "energy", nfe=8)), ["energy"])
    assert tables._best_index(tie, "energy") is None
    cell = tables.metric_cell(sep.iloc[1], "energy", (2.05, 0.1))
    assert cell.text.endswith("≈ floor") and "floor 2.05" in cell.title
    assert not tables.metric_cell(sep.iloc[0], "energy", (2.05, 0.1)).text.endswith("≈ floor")


def test_non_finite_metric_values_survive_loading():
    from bench.report.load import metric_value
    assert math.isnan(metric_value(None)) and metric_value(float("inf")) == math.inf
    assert metric_value("-Infinity") == -math.inf and math.isnan(metric_value({"nonfinite": "nan"}))
    assert metric_value(0.25) == 0.25


def test_weights_are_chosen_on_the_validation_split():
    from bench.report.sections import apply_weights_choice

    valid = _evals([{"label": "flow", "weights": w, "nfe": 4, "seed": s, "run_id": f"f{s}", METRIC_PREFIX + "fd_domain": v}
                    for w, vals in (("raw", [2.0, 2.2]), ("ema_0.99", [1.0, 1.4]), ("ema_0.999", [1.1, np.nan]))
                    for s, v in enumerate(vals)])
    scores = stats.chosen_weights(valid, "fd_domain")
    assert list(scores["flow"]) == ["ema_0.99", "raw", "ema_0.999"]      # a non-finite seed sinks its weights
    test = _evals([{"label": lab, "weights": w, "nfe": 4, "seed": 0, "run_id": "x", METRIC_PREFIX + "fd_domain": 3.0}
                   for lab in ("flow", "edm") for w in ("raw", "ema_0.99", "ema_0.999")])
    kept, note = apply_weights_choice(test, valid)
    assert sorted(map(tuple, kept[["label", "weights"]].values.tolist())) == [
        ("edm", "ema_0.99"), ("edm", "ema_0.999"), ("edm", "raw"), ("flow", "ema_0.99")]
    assert "flow: ema_0.99" in note and "validation split" in note
    assert apply_weights_choice(test, valid.iloc[0:0])[1] is None


def test_tuning_trials_figure_reads_the_studies(tmp_path):
    import json

    from bench.report import figures as fg
    from bench.report import tuning

    for m, vals in (("flow", [0.01, 0.02, 0.005]), ("edm", [0.03, 0.004])):
        d = tmp_path / "tune" / f"{m}_ring8"
        d.mkdir(parents=True)
        trials = [{"number": i, "state": "COMPLETE", "value": v, "counted": True} for i, v in enumerate(vals)]
        trials += [{"number": 7, "state": "FAIL", "value": None, "counted": True},
                   {"number": 8, "state": "FAIL", "interrupted": True, "counted": False},
                   {"number": 9, "state": "COMPLETE", "value": 0.5, "repeat": True, "counted": False},
                   {"number": 10, "state": "COMPLETE", "value": 0.6, "beyond_budget": True, "counted": False}]
        (d / "study.json").write_text(json.dumps({"method": m, "data": "ring8", "objective": {"metric": "energy"},
                                                  "budget": {"trials": 16}, "trials": trials,
                                                  "best": {"value": min(vals)}}))
    fig = tuning.trials_figure(tmp_path, "ring8", fg.palette(["flow", "edm"]))
    assert "edm: 2 trials, best 0.004, median 0.017, 1 failed" in fig.alt
    assert "flow: 3 trials, best 0.005, median 0.01, 1 failed" in fig.alt and fig.uri.startswith("data:image/png")
    assert [s["method"] for s in tuning.studies(tmp_path, "ring8")] == ["edm", "flow"]
