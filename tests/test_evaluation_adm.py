"""ADM evaluator compatibility: sharded samples assembled into guided-diffusion's .npz layout, read back
by numpy, hashed by content; the evaluator's printed numbers recorded beside ours."""
import json

import numpy as np
import pytest
import torch

from bench import record as rec
from bench.evaluation import adm
from bench.evaluation.__main__ import main as evaluation_main

ADM_OUTPUT = """computing reference batch activations...
Computing evaluations...
Inception Score: 215.8342
FID: 3.9431
sFID: 5.1201
Precision: 0.8105
Recall: 0.5122
"""


def _shards(tmp_path, x, bounds, quantize="floor"):
    parts = []
    for r, (a, b) in enumerate(bounds):
        w = adm.ShardWriter(tmp_path / ".parts" / f"p.rank{r}.npy", b - a, (-1.0, 1.0), quantize)
        for i in range(a, b, 3):                     # batches of 3, as generate streams them
            w.add(x[i:min(i + 3, b)])
        parts.append(w.close())
    return parts


def test_sharded_samples_round_trip_through_the_adm_layout(tmp_path):
    x = torch.rand(11, 3, 6, 5, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1   # some outside [-1, 1]
    labels = np.arange(11) % 4
    out = tmp_path / "samples.npz"
    digest = adm.assemble(out, _shards(tmp_path, x, [(0, 4), (4, 7), (7, 11)]), labels)
    with np.load(out) as z:
        assert z.files == ["arr_0", "arr_1"]
        expected = ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()   # ADM's sampler
        np.testing.assert_array_equal(z["arr_0"], expected)
        np.testing.assert_array_equal(z["arr_1"], labels)
    assert digest == adm.samples_sha256(out)
    assert not list((tmp_path / ".parts").iterdir())               # parts removed once assembled
    one = tmp_path / "one.npz"
    assert adm.assemble(one, _shards(tmp_path, x, [(0, 11)]), labels) == digest   # world size does not matter
    grey = adm.to_nhwc_uint8(torch.zeros(2, 1, 4, 4), (-1.0, 1.0), "round")
    assert grey.shape == (2, 4, 4, 3) and (grey == 128).all()       # round(127.5) = 128, one channel -> RGB
    assert (adm.to_nhwc_uint8(torch.zeros(2, 1, 4, 4), (-1.0, 1.0), "floor") == 127).all()


def test_shard_writer_refuses_a_short_shard(tmp_path):
    w = adm.ShardWriter(tmp_path / "p.npy", 5, (-1.0, 1.0), "round")
    w.add(torch.zeros(3, 3, 2, 2))
    with pytest.raises(RuntimeError, match="3 of 5 images written"):
        w.close()


def test_adm_log_parsing():
    assert adm.parse_adm_log(ADM_OUTPUT) == {"is": 215.8342, "fid": 3.9431, "sfid": 5.1201, "precision": 0.8105,
                                             "recall": 0.5122}
    with pytest.raises(ValueError, match="no 'FID: <number>' line"):
        adm.parse_adm_log("Inception Score: 3.0\n")


def _record_with_samples(tmp_path):
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    run_dir = tmp_path / "results" / "runs" / "r1"
    npz = run_dir / "adm" / "samples_ema_0.99_nfe1_g1_n6.npz"
    digest = adm.assemble(npz, _shards(tmp_path, x, [(0, 6)]), None)
    record = rec.new_record("r1", {"seed": 0}, {}, {})
    record["evals"] = [{"weights": "ema_0.99", "nfe": 1, "nfe_measured": 1.0, "guidance": 1.0, "n_samples": 6,
                        "seed": 0, "metrics": {"fid": 3.9, "is": 214.0}, "timing": {},
                        "adm_samples": {"file": f"adm/{npz.name}", "samples_sha256": digest}}]
    rec.write_atomic(tmp_path / "results" / "records" / "r1.json", record)
    return npz


def test_import_adm_result_records_their_numbers_beside_ours(tmp_path, capsys):
    npz = _record_with_samples(tmp_path)
    log = tmp_path / "adm.txt"
    log.write_text(ADM_OUTPUT)
    results = str(tmp_path / "results")
    assert evaluation_main(["import-adm-result", str(npz), str(log), "--results", results,
                            "--reference", "VIRTUAL_imagenet256_labeled.npz"]) == 0
    shown = capsys.readouterr().out
    assert "fid" in shown and "3.9000" in shown and "3.9431" in shown
    ev = json.loads((tmp_path / "results" / "records" / "r1.json").read_text())["evals"][0]
    assert ev["adm_evaluator"]["fid"] == 3.9431 and ev["adm_evaluator"]["is"] == 215.8342
    assert ev["adm_evaluator"]["reference"] == "VIRTUAL_imagenet256_labeled.npz" and ev["metrics"]["fid"] == 3.9


def test_import_adm_result_refuses_other_images(tmp_path, capsys):
    npz = _record_with_samples(tmp_path)
    log = tmp_path / "adm.txt"
    log.write_text(ADM_OUTPUT)
    with np.load(npz) as z:
        changed = z["arr_0"].copy()
    changed[0, 0, 0, 0] ^= 1
    np.savez(npz, arr_0=changed)
    assert evaluation_main(["import-adm-result", str(npz), str(log), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "does not hold the images that were measured" in err and len(err.strip().splitlines()) == 1
    assert "adm_evaluator" not in json.loads((tmp_path / "results" / "records" / "r1.json").read_text())["evals"][0]
