"""When a record's sampling time was measured on a loaded machine (no torch).

``bench/sampling.py`` records, beside the wall-clock ``sample_seconds``, this process's CPU time over the
same calls (``cpu_seconds``) and the 1-minute load average at the end (``load_avg_1m``). Their ratio is
the number of cores this process kept busy; the rest of the load average is other processes. A timing
is marked loaded when other processes kept at least half the machine's cores (``env.cpus``) busy:
``load_avg_1m - cpu_seconds / sample_seconds >= cpus / 2``. Records without these fields (older ones)
are not marked: unknown, not clean.
"""
from __future__ import annotations

import math


def load_note(timing: dict, env: dict) -> str | None:
    """A short note when ``timing`` was measured on a loaded machine, else None."""
    load, cpu, wall, cpus = (timing.get("load_avg_1m"), timing.get("cpu_seconds"), timing.get("sample_seconds"),
                             env.get("cpus"))
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (load, cpu, wall, cpus)) or wall <= 0:
        return None
    own = cpu / wall
    if load - own < cpus / 2:
        return None
    return f"load average {load:.1f} on {cpus:g} CPUs while sampling; this process had {own:.1f} of them"
