"""``python -m bench.perf.first_error``: time from starting ``python -m bench.run`` to its first line.

Target (issue 16): a config error is reported in under 2 s on an idle 2-core machine, and ``--help``
is fast. Mistakes that composing and the torch-free checks find (``bench.tasks.precheck``) never import
torch; the ones that need the method built (here ``method.group_size=7``) pay for torch and are shown
for comparison. Each command runs as a user runs it, in a fresh process. On a shared machine wall time
is inflated by the load: the CPU time (user+sys) of the process is what an idle machine would take,
and both are printed with the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench.perf.report_build import _child_cpu

TARGET_SECONDS = 2.0
CASES = {
    "bad key (train.foo=1)": ["train.foo=1"],
    "bad value (train.lr=abc)": ["train.lr=abc"],
    "unknown option (method=nope)": ["method=nope"],
    "--help": ["--help"],
    "needs the method (method.group_size=7)": ["method.group_size=7"],
}


def first_line(args: list[str], results: str) -> tuple[float, float, float, str]:
    """(seconds to the first output line, seconds to exit, CPU seconds, that line)."""
    c0, t0 = _child_cpu(), time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", f"results_dir={results}", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    line = proc.stdout.readline()
    t_line = time.perf_counter() - t0
    proc.communicate()
    return t_line, time.perf_counter() - t0, _child_cpu() - c0, line.strip()


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.first_error", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            runs = [first_line(case, tmp) for _ in range(args.repeats)]
            rows.append((name, [r[0] for r in runs], [r[2] for r in runs], runs[0][3]))
    print(f"{args.repeats} run(s) each; load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'case':<42} {'first line s (best/median)':>27} {'CPU s (best)':>13}  first line")
    for name, wall, cpu, line in rows:
        print(f"{name:<42} {min(wall):>13.2f} / {statistics.median(wall):<11.2f} {min(cpu):>13.2f}  {line[:70]}")
    bad_key = rows[0]
    met = min(bad_key[1]) < TARGET_SECONDS
    print(f"bad key: first error line after {min(bad_key[1]):.2f} s wall ({min(bad_key[2]):.2f} s CPU); target "
          f"< {TARGET_SECONDS:g} s on an idle machine: {'met' if met else 'MISSED (see the CPU time under load)'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
