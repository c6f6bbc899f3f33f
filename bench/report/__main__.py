"""``python -m bench.report [--results DIR] [--out DIR]``: write the HTML report and print its path."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import ConfigError
from bench.report.build import build_report, default_out
from bench.writable import check_folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split(":", 1)[1].strip())
    p.add_argument("--results", default="results", help="results folder with records/ (default: results)")
    p.add_argument("--out", default=None, help="where the pages go (default: reports/ beside the results "
                   "folder, i.e. <results>/../reports)")
    args = p.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"bench.report: error: results folder '{args.results}' does not exist; run a suite first "
              f"(python -m bench.suite quick) or pass --results DIR", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_out(Path(args.results))
    try:
        check_folder("--out", out, subfolders=())
    except ConfigError as e:
        print(f"bench.report: error: {e}", file=sys.stderr)
        return 2
    index = build_report(Path(args.results), out,
                         warn=lambda problem: print(f"bench.report: skipped {problem}", file=sys.stderr))
    print(f"Report: {index.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
