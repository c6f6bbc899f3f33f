"""The claims: one definition of their variants (bench/conf/suite/claims.yaml) read by the suite and the
claims script alike, a verdict for every claim, and the field-level claims' computations."""
from __future__ import annotations

import math

import pytest
import torch

from bench import suite as bs
from bench.claims import drifting_fields as dfl
from bench.claims import runs as cr
from bench.claims.verdicts import CLAIMS, spearman
from bench.config import compose_config
from bench.data import build_data
from bench.tasks import prepare


def test_the_script_runs_exactly_the_suites_jobs(tmp_path):
    spec = bs.load_suite(bs.suite_file("claims"))
    groups = {cr.claim_key(j["group"]) for j in spec["jobs"]}
    assert groups == set(CLAIMS)                                  # a verdict for every claim and no other
    suite_jobs = bs.expand_jobs(spec, [f"results_dir={tmp_path}", "seed=0,1,2"])
    runs = cr.claim_runs(sorted(groups), [0, 1, 2], str(tmp_path))
    assert sorted(r.overrides for r in runs) == sorted(tuple(j.overrides) for j in suite_jobs)
    for r in runs[::80] + [r for r in runs if r.claim == "12.8"][:1]:   # run ids as bench.run names them
        assert prepare(compose_config(list(r.overrides))).run_id == r.run_id
    with pytest.raises(SystemExit, match="unknown claim"):
        cr.claim_runs(["z"], [0], str(tmp_path))


def test_overlap_toy_and_data_scale():
    d = build_data({"name": "overlap", "n_train": 4000})
    assert d.spec.num_classes == 2 and torch.equal(d.modes.weights, torch.tensor([0.25, 0.5, 0.25]))
    comp = torch.cdist(d.x, d.modes.means).argmin(1)
    share = lambda c, k: float((comp[d.y == c] == k).double().mean())  # noqa: E731
    assert share(0, 0) == pytest.approx(0.5, abs=0.03) and share(0, 1) == pytest.approx(0.5, abs=0.03)
    assert share(1, 1) == pytest.approx(0.5, abs=0.03) and share(0, 2) < 0.01    # the classes share comp 1
    s = build_data({"name": "ring8", "n_train": 100, "scale": 4.0})
    one = build_data({"name": "ring8", "n_train": 100})
    assert torch.allclose(s.x, 4 * one.x) and s.modes.std == pytest.approx(0.04)
    assert torch.allclose(s.reference(10)[0], 4 * one.reference(10)[0])


def test_field_claims_compute_what_they_say():
    floors = [dfl.floor_energy(s, "self", 0, draws=20) for s in (0.0, 0.5, 2.0)]
    assert 0.05 < floors[0] < floors[1] < floors[2]                  # a finite-sample floor, rising with the shift
    y = torch.linspace(-2, 2, 50, dtype=torch.float64)
    w = torch.rand(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    assert dfl.field_eq10(x, y, w, w, 0.5).abs().max() < 1e-12        # V = 0 at b = a
    assert dfl.field_eq10(x, y, w, w.flip(0), 0.5).abs().max() > 1e-3
    assert spearman([1, 2, 3, 4], [10, 20, 25, 40]) == pytest.approx(1.0)
    assert math.isclose(spearman([1, 2, 3], [3, 2, 1]), -1.0)


def test_a_verdict_with_a_missing_value_is_incomplete_not_a_failure():
    from bench.claims.verdicts import verdict
    assert verdict(True, 1.0, [0.5]) == "HOLDS" and verdict(False, 1.0) == "FAILS"
    for missing in (float("nan"), None, []):
        assert verdict(False, 1.0, missing) == "INCOMPLETE" == verdict(True, missing)
