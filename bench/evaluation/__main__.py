"""``python -m bench.evaluation import-adm-result SAMPLES.npz EVALUATOR_OUTPUT.txt [--results DIR]``.

Records what guided-diffusion's evaluator printed for one of our ADM ``.npz`` sample files beside our own
numbers for the same point (``adm_evaluator`` in the record's evaluation entry), after checking that the
file still holds the images we measured (``samples_sha256``). The evaluator is run as README
"Evaluation" shows::

    python guided-diffusion/evaluations/evaluator.py VIRTUAL_imagenet256_labeled.npz SAMPLES.npz > out.txt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import record as rec
from bench.evaluation.adm import parse_adm_log, samples_sha256


def find_entry(results: Path, npz: Path, digest: str) -> tuple[Path, dict, dict]:
    """(record path, record, evaluation entry) that wrote these very images (by ``samples_sha256``)."""
    records, same_name = results / "records", []
    for path in sorted(records.glob("*.json")):
        record = rec.read(path)
        for ev in record["evals"]:
            written = ev.get("adm_samples") or {}
            if written.get("samples_sha256") == digest:
                return path, record, ev
            if written.get("file", "").rsplit("/", 1)[-1] == npz.name:
                same_name.append(record["run_id"])
    if same_name:
        raise ValueError(f"{npz} does not hold the images that were measured as {npz.name} (in run "
                         f"{', '.join(same_name)}): its samples_sha256 is {digest[:16]}...; re-run that point")
    raise ValueError(f"no evaluation point in {records} wrote {npz.name} (eval.adm_samples=true writes them to "
                     f"{results}/runs/<run_id>/adm/)")


def import_adm_result(npz: Path, log: Path, results: Path, reference: str | None = None) -> dict:
    if not npz.is_file():
        raise ValueError(f"{npz}: no such file")
    if not log.is_file():
        raise ValueError(f"{log}: no such file (save what the evaluator printed, e.g. `... > out.txt`)")
    theirs = parse_adm_log(log.read_text())
    path, record, ev = find_entry(results, npz, samples_sha256(npz))
    ev["adm_evaluator"] = {**theirs, "reference": reference, "output": str(log), "imported": rec.now()}
    rec.write_atomic(path, record)
    return {"record": str(path), "ours": {k: ev["metrics"].get(k) for k in theirs}, "theirs": theirs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.evaluation", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import-adm-result", help="record the ADM evaluator's numbers for one of our .npz files")
    imp.add_argument("npz", type=Path)
    imp.add_argument("log", type=Path, help="what guided-diffusion's evaluations/evaluator.py printed")
    imp.add_argument("--results", type=Path, default=Path("results"))
    imp.add_argument("--reference", default=None, help="the reference batch the evaluator used (recorded)")
    args = ap.parse_args(argv)
    try:
        out = import_adm_result(args.npz, args.log, args.results, args.reference)
    except (ValueError, rec.RecordError, OSError) as e:
        print(f"bench.evaluation: error: {e}", file=sys.stderr)
        return 2
    print(f"{'metric':<10} {'ours':>12} {'ADM evaluator':>14}")
    for k, theirs in out["theirs"].items():
        ours = out["ours"][k]
        print(f"{k:<10} {'n/a' if ours is None else f'{ours:.4f}':>12} {theirs:>14.4f}")
    print(f"Record: {out['record']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
