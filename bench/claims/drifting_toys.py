"""The paper's toy-scale claims about drifting, each one command (PAPER.md sections 8 and 12).

``python -m bench.claims.drifting_toys CLAIM [CLAIM ...] [--seeds 0 1] [--jobs 2] [--steps 800] [--batch 256]``

Claims (every run is an ordinary ``python -m bench.run`` job; the command line of each is printed, and its
record lands in ``--results-dir``, default ``results/claims``):

- ``a``: a generator initialised collapsed onto one mode of ``bimodal`` still covers both modes (Fig. 3),
  with the notebook's Algorithm 2 (T = 0.05 and T = 0.2) and with the production loss.
- ``b``: the anti-symmetry ablation (Table 1): attraction or repulsion scaled by 1.5 and 2, and attraction
  only, are clearly worse than the default on ring8 and grid25 (production loss).
- ``c``: the kernel normalisations of Table 11 (softmax over x and y, over y, none) all converge.
- ``d``: the temperatures {0.02, 0.05, 0.2} together are at least as good as the best single one (A.6).
- ``clamp``: what the release's affinity floor (``sqrt(clip(row * col, 1e-6))`` = 1e-3 per entry) does
  when groups are large: group size 64 (the release's N_neg) vs the whole batch, with and without it.

The production-loss toy runs disable the affinity floor (``method.affinity_clamp=0``) except in ``clamp``,
which shows why: with hundreds of targets per group the floor is as large as a typical affinity and the
field degenerates into a pull towards the data mean. Metrics (PROTOCOLS.md): modes captured, high-quality
fraction, reverse KL of the mode histogram, energy distance to held-out data (its data-vs-data floor is
about 0), and ``spread``: the RMS distance of samples to their nearest mode over the data's (1 = the modes'
width; below 1 over-concentrated, above 1 spread around or between modes). Verdicts are computed from the
numbers with the thresholds printed next to them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import record as rec
from bench.data.toy import TOYS

PROD = ["method.loss=production", "method.affinity_clamp=0"]
METRICS = ("modes", "hq_frac", "reverse_kl", "energy", "spread")


@dataclass(frozen=True)
class Run:
    claim: str
    data: str
    variant: str
    overrides: tuple[str, ...]

    def tag(self) -> str:
        return f"claim{self.claim}-{self.variant}".replace(" ", "_").replace("[", "").replace("]", "") \
            .replace(",", "_").replace("=", "")


def runs_of(claim: str) -> list[Run]:
    if claim == "a":
        out = []
        for loss, extra in (("alg2", []), ("alg2 T=0.2", ["method.temperature=0.2"]), ("production", PROD)):
            out.append(Run("a", "bimodal", f"{loss} default init", ("data=bimodal", *extra)))
            out.append(Run("a", "bimodal", f"{loss} collapsed init", ("data=bimodal", *extra,
                                                                        "method.collapse_to=[1.0,0.0]")))
        return out
    variants = {
        "b": [("default", []), ("attraction x1.5", ["method.attraction=1.5"]), ("attraction x2", ["method.attraction=2.0"]),
              ("repulsion x1.5", ["method.repulsion=1.5"]), ("repulsion x2", ["method.repulsion=2.0"]),
              ("attraction only", ["method.repulsion=0.0"])],
        "c": [("xy", ["method.kernel_norm=xy"]), ("y", ["method.kernel_norm=y"]), ("none", ["method.kernel_norm=none"])],
        "d": [("T=0.02", ["method.temperatures=[0.02]"]), ("T=0.05", ["method.temperatures=[0.05]"]),
              ("T=0.2", ["method.temperatures=[0.2]"]), ("T=all3", ["method.temperatures=[0.02,0.05,0.2]"])],
        "clamp": [(f"group {g} clamp {c}", ["method.loss=production", f"method.affinity_clamp={c}",
                                           f"method.group_size={g}"]) for g in ("64", "null") for c in ("1e-6", "0")],
    }[claim]
    return [Run(claim, data, name, (f"data={data}", *(PROD if claim != "clamp" else []), *extra))
            for data in ("ring8", "grid25") for name, extra in variants]


def command(run: Run, seed: int, args) -> list[str]:
    return [sys.executable, "-m", "bench.run", *run.overrides, f"seed={seed}", f"tag={run.tag()}",
            f"train.steps={args.steps}", f"train.batch_size={args.batch}", f"results_dir={args.results_dir}",
            "train.progress=false"]


def execute(cmd: list[str], threads: int) -> tuple[list[str], int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = (p.stderr or p.stdout).strip().splitlines()
    return cmd, p.returncode, lines[-1] if lines else ""


def spread(samples: np.ndarray, data: str) -> float:
    """RMS distance of the samples to their nearest mode mean over that of the data (sigma * sqrt(2)):
    1 matches the modes' width, < 1 is over-concentrated, > 1 is spread out (between or around modes)."""
    _, modes = TOYS[data]()
    d = np.linalg.norm(samples[:, None, :] - modes.means.numpy()[None], axis=-1).min(axis=1)
    return float(np.sqrt((d ** 2).mean()) / (modes.std * np.sqrt(2)))


def metrics_of(run: Run, seed: int, args) -> dict[str, float] | None:
    name = f"drifting-{run.data}-mlp-s{seed}-{run.tag()}"
    path = Path(args.results_dir) / "records" / f"{name}.json"
    if not path.exists():
        return None
    evals = rec.read(path)["evals"]
    if not evals:
        return None
    samples = Path(args.results_dir) / "runs" / name / "samples_ema_0.99_nfe1_g1.npy"
    extra = {"spread": spread(np.load(samples), run.data)} if samples.exists() else {}
    return {**evals[-1]["metrics"], **extra}


def summarise(values: list[float | None]) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt(s: tuple[float, float] | None) -> str:
    return "n/a" if s is None else f"{s[0]:.4g} +- {s[1]:.2g}"


def verdicts(claim: str, table: dict[tuple[str, str], dict[str, tuple[float, float] | None]]) -> list[str]:
    """Plain-language outcome per dataset, from the mean metrics (thresholds stated in the text)."""
    out = []
    energy = {k: (v["energy"] or (float("inf"), 0))[0] for k, v in table.items()}
    modes = {k: (v["modes"] or (0, 0))[0] for k, v in table.items()}
    datasets = sorted({d for d, _ in table})
    for d in datasets:
        rows = {v: k for k in table if k[0] == d for v in [k[1]]}
        if claim == "a":
            for loss in ("alg2", "alg2 T=0.2", "production"):
                k = (d, f"{loss} collapsed init")
                if k in table:
                    kl = (table[k]["reverse_kl"] or (float("inf"), 0))[0]
                    out.append(f"{d} {loss}: collapsed init covers {modes[k]:.1f}/2 modes on average, reverse KL "
                               f"{kl:.3g} -> {'HOLDS' if modes[k] == 2 and kl < 0.1 else 'FAILS'} "
                               f"(needs 2 modes in every seed and KL < 0.1)")
        elif claim == "b":
            base = energy[(d, "default")]
            worse = {v: energy[(d, v)] / base for v in rows if v != "default"}
            ok = all(r >= 2.0 or modes[(d, v)] < modes[(d, "default")] for v, r in worse.items())
            out.append(f"{d}: energy / default = " + ", ".join(f"{v} {r:.2f}x" for v, r in worse.items())
                       + f" -> {'HOLDS' if ok else 'FAILS'} (every variant >= 2x the default energy or fewer modes)")
        elif claim == "c":
            ok = all(energy[(d, v)] < 0.1 and modes[(d, v)] == modes[(d, "xy")] for v in rows)
            out.append(f"{d}: energy " + ", ".join(f"{v} {energy[(d, v)]:.3g}" for v in rows)
                       + f" -> {'HOLDS' if ok else 'FAILS'} (all reach energy < 0.1 and the default's mode count)")
        elif claim == "d":
            singles = {v: energy[(d, v)] for v in rows if v != "T=all3"}
            best = min(singles, key=singles.get)
            ok = energy[(d, "T=all3")] <= 1.1 * singles[best]
            out.append(f"{d}: all three {energy[(d, 'T=all3')]:.3g} vs best single {best} {singles[best]:.3g} -> "
                       f"{'HOLDS' if ok else 'FAILS'} (within 10% of the best single temperature or better)")
        elif claim == "clamp":
            out.append(f"{d}: energy " + ", ".join(f"{v} {energy[(d, v)]:.3g} ({modes[(d, v)]:.1f} modes)" for v in rows))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("claims", nargs="+", choices=["a", "b", "c", "d", "clamp"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--results-dir", default="results/claims")
    args = ap.parse_args(argv)
    todo = [(r, s) for c in args.claims for r in runs_of(c) for s in args.seeds]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for cmd, code, last in pool.map(lambda rs: execute(command(*rs, args), args.threads), todo):
            print(("ok   " if code == 0 else f"FAIL {code} ") + " ".join(cmd[2:]) + ("" if code == 0 else f"\n     {last}"))
    for claim in args.claims:
        table = {}
        print(f"\nclaim {claim}: {len(args.seeds)} seed(s), {args.steps} steps, batch {args.batch}")
        print(f"{'data':8s} {'variant':28s} " + " ".join(f"{m:>18s}" for m in METRICS))
        for run in runs_of(claim):
            per_seed = [metrics_of(run, s, args) for s in args.seeds]
            row = {m: summarise([p.get(m) if p else None for p in per_seed]) for m in METRICS}
            table[(run.data, run.variant)] = row
            print(f"{run.data:8s} {run.variant:28s} " + " ".join(f"{fmt(row[m]):>18s}" for m in METRICS))
        for line in verdicts(claim, table):
            print("  " + line)


if __name__ == "__main__":
    main()
