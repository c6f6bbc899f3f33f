"""``python -m bench.report [--results DIR] [--out DIR]``: write the HTML report and print its path."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.report.build import build_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("--results", default="results", help="results folder with records/ (default: results)")
    p.add_argument("--out", default="reports", help="where the pages go (default: reports)")
    args = p.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"bench.report: error: results folder '{args.results}' does not exist; run a suite first "
              f"(python -m bench.suite quick) or pass --results DIR", file=sys.stderr)
        return 2
    index = build_report(Path(args.results), Path(args.out))
    print(f"Report: {index.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
