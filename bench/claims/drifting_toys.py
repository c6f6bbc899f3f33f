"""The paper's small-scale claims about drifting, each one command (PAPER.md sections 8 and 12).

``python -m bench.claims.drifting_toys CLAIM [CLAIM ...] [--seeds 0 1 2] [--jobs 2] [--threads 1]
[--results-dir results/claims] [--no-run]``

Claims are the groups of ``bench/conf/suite/claims.yaml`` (the one definition of their variants, which
``python -m bench.suite claims`` runs too), named by the key in a group's parentheses: ``a`` collapsed
initialisation (Fig. 3), ``b`` anti-symmetry (Table 1), ``c`` kernel normalisation (Table 11), ``d``
temperatures (A.6), ``clamp`` the release's affinity floor, ``e`` feature space vs raw pixels (digits),
``12.4`` the loss tracks an independent distance (Fig. 4), ``12.7`` sample allocation (Table 2), ``12.8``
robustness to the data scale, ``12.9`` training-time CFG on overlapping classes, ``12.11`` style tokens,
``12.12`` the MMD field against the mean-shift field. Every missing run is an ordinary ``python -m
bench.run`` job (its command line is printed, its record lands in ``--results-dir``); then each claim's
table (mean +- sd over seeds) and verdict, computed from the numbers with the threshold printed beside it.
The tables and verdicts are also written to ``<results-dir>/claims_summary.json``. Claims that train
nothing (12.2, 12.8 invariance, 12.13) are ``python -m bench.claims.drifting_fields``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from bench.claims import runs as cr
from bench.claims.verdicts import CLAIMS, fmt


def print_table(rows: list[dict]) -> None:
    """One line per row, with a header wherever the columns change."""
    header = None
    for r in rows:
        metrics = [k for k in r if k not in ("data", "variant")]
        if metrics != header:
            header = metrics
            print(f"{'data':13s} {'variant':26s} " + " ".join(f"{m:>20s}" for m in metrics))
        print(f"{r['data']:13s} {r['variant']:26s} " + " ".join(f"{fmt(r[m]):>20s}" for m in metrics))


def publish(claim: str, title: str, rows: list[dict], verdicts: list[str], results_dir: str, command: str,
            seeds: list[int], missing: list[str]) -> None:
    """Print a claim's table and verdicts and keep them in ``<results_dir>/claims_summary.json``."""
    print(f"\nclaim {claim}: {title}")
    print_table(rows)
    for line in verdicts:
        print("  " + line)
    path = Path(results_dir) / "claims_summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary[claim] = {"command": command, "seeds": seeds, "rows": rows, "verdicts": verdicts, "missing": missing}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, sort_keys=True, allow_nan=True) + "\n")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("claims", nargs="+", choices=list(CLAIMS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--results-dir", default="results/claims")
    ap.add_argument("--no-run", action="store_true", help="only read what is there")
    args = ap.parse_args(argv)
    runs = cr.claim_runs(args.claims, args.seeds, args.results_dir)
    if not args.no_run:
        cr.run_missing(runs, args.results_dir, args.jobs, args.threads,
                       needs_encoder=any(r.data == "digits" for r in runs))
    for claim in args.claims:
        mine = [r for r in runs if r.claim == claim]
        rows, verdicts = CLAIMS[claim](mine, args.results_dir)
        publish(claim, f"{len(args.seeds)} seed(s); runs: {len({r.run_id for r in mine})}", rows, verdicts,
                args.results_dir, "python -m bench.claims.drifting_toys " + " ".join(map(shlex.quote, argv)),
                args.seeds, sorted({r.run_id for r in mine if cr.record(args.results_dir, r.run_id) is None}))


if __name__ == "__main__":
    main()
