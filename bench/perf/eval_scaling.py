"""``python -m bench.perf.eval_scaling [--samples N] [--nfe K]``: one evaluation point of a fixed sample
count on 1 process and on 2 processes (torchrun, gloo, one CPU thread each), and the speed-up.

The point samples ``N`` digits with flow matching at ``K`` Euler steps (``model=dit_digits``) and measures
``fd_domain`` and ``class_acc`` (the suite's digits classifier), so both sampling and feature extraction
are split between the processes (``bench.evaluation``). The time compared is each record's
``point_wall_seconds`` (sampling, gathering and metrics; process start-up excluded); a warm-up evaluation
first fills the classifier and reference caches. Runs 1 process, then 2, then 1 again, and divides the
mean of the 1-process times by the 2-process time. On a shared machine the ratio moves with the load:
quote it with the load average it prints.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = "flow-digits-dit_digits-s0"
TRAIN = ["method=flow", "data=digits", "model=dit_digits", "eval=digits", "train.steps=1", "train.batch_size=16",
         "train.progress=false", "eval.metrics=[]", "eval.num_samples=16", "device=cpu"]


def _bench(args: list[str], results: Path, cache: Path, procs: int = 1) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", DRIFTBENCH_CACHE=str(cache))
    env.pop("WORLD_SIZE", None)
    launcher = ([shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun", "--standalone",
                 f"--nproc_per_node={procs}"] if procs > 1 else [sys.executable])
    cmd = [*launcher, "-m", "bench.run", f"results_dir={results}", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _point(results: Path) -> dict:
    path = results / "records" / f"{RUN}.json"
    record = json.loads(path.read_text())
    ev = record["evals"][-1]
    record["evals"] = []                        # the next measurement evaluates the same point again
    path.write_text(json.dumps(record))
    return ev["timing"]


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.eval_scaling", description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--nfe", type=int, default=16)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        results, cache = Path(d) / "results", Path(d) / "cache"
        _bench(TRAIN, results, cache)
        point = ["task=evaluate", f"run={RUN}", "eval=digits", f"eval.nfe=[{args.nfe}]", "eval.batch_size=250",
                 "eval.latency_repeats=0", "eval.metrics=[fd_domain,class_acc]", "device=cpu"]
        _bench([*point, "eval.num_samples=32"], results, cache)                 # warm-up: classifier, reference
        _point(results)
        times = {}
        for label, procs in (("1 process", 1), ("2 processes", 2), ("1 process again", 1)):
            _bench([*point, f"eval.num_samples={args.samples}"], results, cache, procs)
            t = _point(results)
            times[label] = t["point_wall_seconds"]
            print(f"{label:>16}: {t['point_wall_seconds']:.2f} s for {args.samples} samples "
                  f"({t['samples_per_second_per_process']:.1f} samples/s per process, features "
                  f"{t['feature_images_per_second_per_process']})")
    one = (times["1 process"] + times["1 process again"]) / 2
    print(f"speed-up of 2 processes over 1: {one / times['2 processes']:.2f}x "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
