"""A realistic results folder for the report (tests and ``bench.perf.report_build``), written without torch.

Records follow bench/record.py's schema (validated on write): several methods, three seeds, NFE grids,
toy and image data, timings, training logs with method diagnostics, saved samples and references, a
suite manifest whose jobs are partly missing, a run outside any suite, and one corrupted record.
Metric values are synthetic but shaped like real ones: multi-step methods improve with NFE.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from bench import artifacts
from bench import record as rec
from bench import suite_manifest as sm

NFES = {"drifting": [1], "flow": [1, 2, 4, 8, 16], "diffusion": [1, 4, 16], "meanflow": [1, 2]}
SEEDS = (0, 1, 2)
DIGITS = load_digits().images[:, None].astype(np.float32) / 8.0 - 1.0        # real 8x8 digits in [-1, 1]
RING = np.stack([np.cos(2 * np.pi * np.arange(8) / 8), np.sin(2 * np.pi * np.arange(8) / 8)], 1)


def _ring(rng: np.random.Generator, n: int, spread: float) -> np.ndarray:
    return RING[rng.integers(0, 8, n)] + spread * rng.standard_normal((n, 2))


def _metrics(data: str, method: str, nfe: int, seed: int) -> dict:
    rng = np.random.default_rng(zlib.crc32(f"{data}/{method}/{nfe}/{seed}".encode()))
    q = {"drifting": 0.02, "meanflow": 0.05}.get(method, 0.6 / nfe)          # error shrinking with NFE
    if data == "digits" and method == "flow":
        q = 0.2 / nfe                                                          # catches up with drifting at 16
    if data == "digits":
        return {"fd_domain": 5 + 40 * q + rng.normal(0, 0.1), "precision": 0.8 - q / 2, "recall": 0.7 - q / 3,
                "novelty_score": 0.3 + rng.normal(0, 0.01)}                      # a metric with no direction
    noise = 1 + 0.1 * rng.standard_normal(6)                 # the toys' whole default set: a wide table
    return {"modes": float(min(8, round(8.4 - 6 * q + rng.normal(0, 0.3)))), "hq_frac": 0.95 - q,
            "reverse_kl": 0.01 + q / 4, "energy": 1e-3 + q / 10 * noise[0], "energy_floor": 8e-4,
            "fd_raw": 2e-4 + q * noise[1], "w2": 0.1 + q * noise[2], "swd": 0.05 + q * noise[3],
            "mmd": 3e-4 + q / 5 * noise[4], "precision_raw": 0.9 - q / 2, "recall_raw": 0.85 - q / 3 * noise[5],
            "coverage_raw": 0.9 - q / 2}


def _record(method: str, data: str, seed: int, nfes: list[int], tag: str | None = None, loaded: bool = False) -> dict:
    """``loaded``: sampled while other processes kept the 2 cores busy (bench/report/busy.py)."""
    run_id = f"{method}-{data}-mlp-s{seed}" + (f"-{tag}" if tag else "")
    config = {"method": {"name": method}, "data": {"name": data, "n_train": 100000, "seed": 0},
              "model": {"name": "mlp", "hidden": 256, "depth": 3}, "train": {"steps": 1000, "batch_size": 1024},
              "eval": {"num_samples": 500, "seed": 1000000}, "seed": seed, "tag": tag, "device": "auto",
              "results_dir": "results", "choices": {"method": method, "data": data, "model": "mlp", "train": "toy",
                                                    "eval": "toy", "launcher": "local"}}
    evals = []
    for nfe in nfes:
        spi = 2e-6 * nfe * (1.05 + 0.02 * seed)
        own = 0.4 if loaded else 1.7                       # cores this process kept busy while sampling
        evals.append({"weights": "ema_0.99", "nfe": nfe, "nfe_measured": float(nfe), "guidance": 1.0,
                      "n_samples": 500, "seed": 1000000, "metrics": _metrics(data, method, nfe, seed),
                      "metric_sources": {"energy": {"extractor": "raw", "weights_hash": None,
                                                    "reference": f"{data} reference, n=500", "n_samples": 500}},
                      "timing": {"sample_seconds": spi * 500, "seconds_per_image": spi, "images_per_second": 1 / spi,
                                 "batch_size": 500, "latency_batch1_seconds": 1e-4 * nfe, "device": "cpu",
                                 "peak_memory_bytes": None, "cpu_seconds": own * spi * 500,
                                 "load_avg_1m": 9.5 if loaded else 1.8}})
    return {"schema": rec.SCHEMA, "run_id": run_id, "git_sha": "0123456789abcdef0123456789abcdef01234567",
            "git_dirty": False, "created": "2026-11-01T10:00:00+00:00", "updated": "2026-11-01T10:05:00+00:00",
            "config": config, "env": {"python": "3.11.7", "torch": "2.14.1", "device": "cpu", "world_size": 1,
                                      "precision": "fp32", "cpus": 2},
            "train": {"status": "finished", "steps": 1000, "images_seen": 1024000, "wall_seconds": 60.0 + seed,
                      "resumes": 0, "images_per_second": 17000.0, "final_loss": 1e-3, "gpu_hours": 0.0},
            "params": {"network": 140000, "trainable": 140000}, "evals": evals}


def _artifacts(run_dir: Path, record: dict, data: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(record["run_id"]))
    rows, scale = [], 1.0 + 0.5 * list(NFES).index(record["config"]["method"]["name"]) + 0.05 * record["config"]["seed"]
    batch = 640 if data == "digits" else 1024          # 640K images: counts that ran together as 100000200000
    for step in range(25, 1001, 25):
        row = {"step": step, "images": step * batch, "lr": 1e-3, "wall_s": step * 0.06, "images_per_s": 17000.0,
               "loss": scale * 0.5 / step, "grad_norm": scale / np.sqrt(step)}
        if record["config"]["method"]["name"] == "drifting":
            row.update({"drift_sq": 1.0 / step, "drift_t0.05": 2.0 / step})
        rows.append(json.dumps(row))
    (run_dir / artifacts.TRAIN_LOG).write_text("\n".join(rows) + "\n")
    for ev in record["evals"]:
        if data == "digits":
            noise = ev["metrics"]["fd_domain"] / 60
            x = np.clip(DIGITS[rng.integers(0, len(DIGITS), 500)] + noise * rng.standard_normal((500, 1, 8, 8)), -1, 1)
        else:
            x = _ring(rng, 500, 0.01 + 0.2 * ev["metrics"]["energy"] * 10)
        np.save(run_dir / artifacts.samples_name(ev["weights"], ev["nfe"], ev["guidance"]), x.astype(np.float32))
    kind = "images" if data == "digits" else "points"
    ref = DIGITS[:64] if data == "digits" else _ring(rng, 2500, 0.01)
    artifacts.save_reference(run_dir, lambda k: ref, kind)


def make_results(root: Path, *, missing_jobs: bool = True, corrupt: bool = True) -> Path:
    """Write the fixture under ``root/results`` and return that folder."""
    results = root / "results"
    jobs = []
    for data in ("ring8", "digits"):
        for method, nfes in NFES.items():
            if data == "digits" and method == "diffusion":
                continue
            for seed in SEEDS:
                r = _record(method, data, seed, nfes, loaded=data == "ring8" and method == "flow" and seed == 2)
                jobs.append({"run_id": r["run_id"], "label": method, "group": "", "method": method, "data": data,
                             "seed": seed, "overrides": [f"method={method}", f"data={data}", f"seed={seed}"],
                             "points": [["ema_0.99", n, 1.0] for n in nfes], "n_samples": 500,
                             "eval_seed": 1000000, "metrics": sorted(r["evals"][0]["metrics"])})
                if missing_jobs and method == "meanflow" and seed == 2:
                    continue                        # never run: the suite is half done
                rec.write_atomic(results / "records" / f"{r['run_id']}.json", r)
                _artifacts(results / "runs" / r["run_id"], r, data)
    manifest = {"schema": sm.MANIFEST_SCHEMA, "suite": "fixture", "description": "Fixture suite for the tests.",
                "labels": list(NFES), "git_sha": None, "git_dirty": None, "written": "2026-11-01T10:00:00+00:00",
                "command": "python -m bench.suite fixture", "jobs": jobs}
    sm.write_manifest(results, manifest)
    outside = _record("drifting", "ring8", 0, [1], tag="adhoc")          # a run no suite names
    rec.write_atomic(results / "records" / f"{outside['run_id']}.json", outside)
    _perf(results / "perf")
    if corrupt:
        (results / "records" / "broken-run.json").write_text('{"schema": 1, "run_id": "broken-run", ')
        (results / "perf" / "broken.json").write_text("{")
    return results


def _perf(folder: Path) -> None:
    """Perf-script outputs of the shape ``bench.perf.gpu_step`` and ``bench.perf.sampling`` write."""
    folder.mkdir(parents=True, exist_ok=True)
    for method, ips in (("drifting", 800.0), ("flow", 2000.0)):
        r = {"kind": "gpu_step", "recipe": "ablation_b2", "name": "ablation_b2", "method": method, "device": "cuda:0",
             "gpu_name": "NVIDIA H200", "images_per_step": 256, "images_per_second": ips,
             "step_seconds": {"median": 256 / ips, "min": 256 / ips, "max": 256 / ips, "n": 6},
             "achieved_tflops": 400.0, "peak_tflops_measured": 700.0, "mfu_table": 400 / 989.4,
             "recipe_steps": 30000, "recipe_global_batch": 4096, "release_accelerators": 64,
             "gpu_hours_to_full": 30000 * 4096 / ips / 3600}
        (folder / f"gpu_step-{method}.json").write_text(json.dumps(r))
    s = {"kind": "sampling", "recipe": "ablation_b2", "name": "ablation_b2", "method": "drifting", "nfe": 1,
         "batch": 256, "n": 1024, "device": "cuda:0",
         "modes": {"eager": {"throughput_images_per_second": {"median": 4000.0}, "decode_seconds": 1.024},
                   "graphs": {"throughput_images_per_second": {"median": 10000.0}, "decode_seconds": 1.024}}}
    (folder / "sampling-drifting.json").write_text(json.dumps(s))
