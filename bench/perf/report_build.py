"""``python -m bench.perf.report_build``: time ``python -m bench.report`` over the fixture results.

Target (issue 6): the report over the fixture set builds in under 10 s on 2 CPU cores. The fixture
(``bench/perf/report_fixture.py``) holds 20 run records of four methods, three seeds, NFE grids, toy and
image data, training logs, samples, a half-done suite manifest and a corrupted record. The command runs
as a user runs it, in a fresh process, so import time counts.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.perf.report_fixture import make_results

TARGET_SECONDS = 10.0


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.report_build", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = make_results(Path(tmp))
        times, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), _child_cpu()
            subprocess.run([sys.executable, "-m", "bench.report", "--results", str(results), "--out",
                            str(Path(tmp) / "reports")], check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
            cpu.append(_child_cpu() - c0)
    best, worst = min(times), max(times)
    print(f"python -m bench.report over the fixture: wall best {best:.2f} s, worst {worst:.2f} s, CPU (user+sys) "
          f"best {min(cpu):.2f} s over {args.repeats} run(s) (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores); target < {TARGET_SECONDS:g} s wall: {'met' if best < TARGET_SECONDS else 'MISSED'}")
    return 0 if best < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
