"""FID-50K's path end to end on a reference batch the test writes: a real Inception-v3 (torch-fidelity's,
randomly initialised and saved here, ``eval.inception_weights=PATH``), an ADM reference ``.npz`` with
``mu``/``sigma`` and images, the ADM sample ``.npz``: our FID is the Frechet distance of exactly those
bytes (checked in closed form), and precision/recall equal the ADM evaluator's manifold estimate (k = 3)
against the batch's images."""
import json

import numpy as np
import pytest
import torch

from bench.data import build_data
from bench.metrics import MetricOptions, fid_helper
from bench.metrics.fidelity import to_uint8_rgb
from bench.metrics.inception import InceptionExtractor
from bench.perf.fid_point import random_inception
from tests.conftest import run_bench

RUN = "flow-digits-dit_tiny-s0"


def frechet_low_rank(gen: np.ndarray, mu_ref: np.ndarray, ref: np.ndarray) -> float:
    """FID in closed form for few samples: with centred feature rows X (gen) and Y (ref), the non-zero
    eigenvalues of S_gen S_ref are the squared singular values of X Y^T / sqrt((n-1)(m-1)), so
    tr (S_gen S_ref)^(1/2) is that matrix's nuclear norm (no 2048 x 2048 square root)."""
    x, y = gen - gen.mean(0), ref - ref.mean(0)
    n, m = len(x), len(y)
    cross = np.linalg.svd(x @ y.T / np.sqrt((n - 1) * (m - 1)), compute_uv=False).sum()
    diff = gen.mean(0) - mu_ref
    return float(diff @ diff + (x * x).sum() / (n - 1) + (y * y).sum() / (m - 1) - 2 * cross)


def adm_manifold_pr(ref: np.ndarray, gen: np.ndarray, k: int = 3) -> tuple[float, float]:
    """The ADM evaluator's improved precision/recall: squared distances, radius = the k-th nearest other
    point, a point is inside if within some radius of the other set (restated from its definition)."""
    def d2(a, b):
        return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None], 0)

    r_ref, r_gen = (np.partition(d2(x, x), k, axis=1)[:, k] for x in (ref, gen))
    cross = d2(ref, gen)
    precision = (cross <= r_ref[:, None]).any(axis=0).mean()        # generated inside the real manifold
    recall = (cross <= r_gen[None, :]).any(axis=1).mean()
    return float(precision), float(recall)


@pytest.mark.slow
def test_fid_against_a_reference_batch_the_test_writes(tmp_path):
    weights = random_inception(tmp_path / "inception.pth")
    digits = build_data({"name": "digits"})
    opts = MetricOptions(inception_weights=weights, cache_dir=str(tmp_path / "cache"))
    ext = InceptionExtractor(digits, opts)
    ref_images = to_uint8_rgb(digits.reference(12)[0][100:112], (-1.0, 1.0))          # uint8 [12, 3, 8, 8]
    ref_feats = ext(ref_images)["features"].double().numpy()
    assert ref_feats.std(0).mean() > 1e-3                                              # a live network
    ref = tmp_path / "ref.npz"
    np.savez(ref, arr_0=ref_images.permute(0, 2, 3, 1).numpy(), mu=ref_feats.mean(0), sigma=np.cov(ref_feats, rowvar=False))
    run_bench("method=flow", "data=digits", "model=dit_tiny", "eval=imagenet", "train.steps=2", "train.batch_size=16",
              "train.progress=false", "eval.guidance_grid=null", "eval.nfe=[2]", "eval.num_samples=12", "train.eval_every=0",
              "eval.batch_size=12", "eval.latency_repeats=0", f"eval.reference={ref}", f"eval.inception_weights={weights}",
              f"eval.cache_dir={tmp_path / 'cache'}", "device=cpu", results=tmp_path / "results")
    ev = json.loads((tmp_path / "results" / "records" / f"{RUN}.json").read_text())["evals"][0]
    with np.load(tmp_path / "results" / "runs" / RUN / ev["adm_samples"]["file"]) as z:
        ours = z["arr_0"]
    assert ours.shape == (12, 8, 8, 3)
    feats = ext(torch.from_numpy(ours).permute(0, 3, 1, 2))
    gen_feats = feats["features"].double().numpy()
    assert ev["metrics"]["fid"] == pytest.approx(frechet_low_rank(gen_feats, ref_feats.mean(0), ref_feats), rel=1e-5)
    p, r = adm_manifold_pr(ref_feats, gen_feats)
    assert (ev["metrics"]["precision"], ev["metrics"]["recall"]) == (pytest.approx(p), pytest.approx(r))
    assert ev["metrics"]["is"] > 1.0 and ev["metric_sources"]["is"]["is_splits"] == 10
    src = ev["metric_sources"]["fid"]
    assert "ADM reference batch ref.npz" in src["reference"] and src["quantize"] == "floor"
    assert src["weights_hash"] == fid_helper.file_hash(tmp_path / "inception.pth")
    assert ev["timing"]["feature_images_per_second_per_process"]["inception"] > 0


def test_a_reference_batch_of_another_resolution_is_refused(tmp_path):
    from bench.config import ConfigError, compose_config
    from bench.tasks import prepare

    ref = tmp_path / "ref64.npz"
    np.savez(ref, arr_0=np.zeros((2, 64, 64, 3), np.uint8), mu=np.zeros(2048), sigma=np.eye(2048))
    weights = tmp_path / "w.pth"
    torch.save({"fc.weight": torch.zeros(1)}, weights)        # what the check before training reads
    with pytest.raises(ConfigError, match="holds 64x64 images but the samples are 8x8: use a reference batch of 8x8 images"):
        prepare(compose_config(["method=flow", "data=digits", "model=dit_tiny", "eval=imagenet", "eval.guidance_grid=null",
                                "eval.metrics=[fid]", f"eval.reference={ref}", f"eval.inception_weights={weights}"]))
