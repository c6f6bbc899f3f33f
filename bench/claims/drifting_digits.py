"""Claim (e): feature-space drifting beats raw-pixel drifting on 8x8 digits (PAPER.md 2.1, 10.3, 12.10).

``python -m bench.claims.drifting_digits [--seeds 0] [--steps 600] [--jobs 2] [--model mlp]``

1. Pre-trains the tiny MAE encoder once (``python -m bench.run task=pretrain_encoder data=digits``).
2. Trains two class-conditional drifting generators with training-time CFG and the same budget and
   generator: ``features`` (the default digits configuration: multi-scale encoder features plus the raw
   output) and ``raw`` (``method.encoder_path=null``: the production loss on the flattened pixels only).
3. Reads from their records, at every evaluated guidance, the suite's domain metrics (PROTOCOLS.md):
   ``fd_domain`` (Frechet distance in the features of the digits classifier the suite trains and caches;
   an offline FD, not FID) and ``class_acc`` (the fraction of samples that classifier assigns to their
   conditioning label). The claim holds when features give the lower ``fd_domain`` both at alpha = 1
   and at the best guidance, averaged over seeds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import record as rec


def bench_run(args_list: list[str], threads: int) -> tuple[list[str], int, str]:
    cmd = [sys.executable, "-m", "bench.run", *args_list]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    lines = (p.stderr or p.stdout).strip().splitlines()
    return cmd, p.returncode, lines[-1] if lines else ""


def report(cmd: list[str], code: int, last: str) -> None:
    print(("ok   " if code == 0 else "FAIL ") + " ".join(cmd[2:]) + ("" if code == 0 else f"\n     {last}"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--model", default="mlp", help="generator config (mlp or dit_digits)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results-dir", default="results/claims")
    args = ap.parse_args(argv)
    common = [f"results_dir={args.results_dir}", "train.progress=false"]
    cmd, code, last = bench_run(["task=pretrain_encoder", "data=digits", *common], args.threads)
    report(cmd, code, last)
    if code:
        sys.exit(1)
    variants = {"features": [], "raw": ["method.encoder_path=null"]}
    jobs = [(v, s, ["method=drifting", "data=digits", f"model={args.model}", f"seed={s}", f"train.steps={args.steps}",
                    f"tag=claime-{v}", *extra, *common]) for v, extra in variants.items() for s in args.seeds]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for out in pool.map(lambda j: bench_run(j[2], args.threads), jobs):
            report(*out)
    print(f"\n{'variant':10s} {'seed':>4s} {'guidance':>8s} {'fd_domain':>10s} {'class_acc':>9s}")
    best: dict[str, list[float]] = {v: [] for v in variants}
    at1: dict[str, list[float]] = {v: [] for v in variants}
    for v, s, _ in jobs:
        path = Path(args.results_dir) / "records" / f"drifting-digits-{args.model}-s{s}-claime-{v}.json"
        evals = [e for e in rec.read(path)["evals"] if e["weights"] == "ema_0.99"] if path.exists() else []
        fds = {}
        for e in evals:
            m = e["metrics"]
            fds[e["guidance"]] = m["fd_domain"]
            print(f"{v:10s} {s:4d} {e['guidance']:8g} {m['fd_domain']:10.4g} {m['class_acc']:9.3f}")
        if fds:
            best[v].append(min(fds.values()))
            at1[v].append(fds.get(1.0, float("nan")))
    mean = lambda xs: statistics.fmean(xs) if xs else float("nan")  # noqa: E731
    holds = mean(best["features"]) < mean(best["raw"]) and mean(at1["features"]) < mean(at1["raw"])
    print(f"  best fd_domain over guidance: features {mean(best['features']):.4g} vs raw {mean(best['raw']):.4g}; "
          f"at alpha 1: {mean(at1['features']):.4g} vs {mean(at1['raw']):.4g} -> "
          f"{'HOLDS' if holds else 'FAILS'} (features lower in both)")


if __name__ == "__main__":
    main()
