"""The default benchmark, end to end, exactly as ``python -m bench.run`` runs it."""
import json

import pytest

from tests.conftest import run_bench


@pytest.mark.slow
def test_default_run_captures_all_ring8_modes_at_nfe_1(results):
    out = run_bench("train.progress=false", results=results)
    path = results / "records" / "drifting-ring8-mlp-s0.json"
    assert f"Record: {path}" in out.stdout
    rec = json.loads(path.read_text())
    assert rec["train"]["status"] == "finished" and rec["train"]["images_seen"] == 1000 * 1024
    (ev,) = rec["evals"]
    assert ev["nfe"] == 1 and ev["nfe_measured"] == 1.0 and ev["n_samples"] == 2500
    assert ev["metrics"]["modes"] == 8
    assert ev["metrics"]["energy"] < 0.1
    assert rec["params"]["network"] > 0 and rec["git_sha"] is not None
