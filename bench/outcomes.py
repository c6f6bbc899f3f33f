"""What happened to each job of a sweep or suite, one line per job (no torch: the summary runs in the
submitting process, whatever the launcher).

Every job writes ``<folder>/<num>.json`` (its number, overrides, status, one-line reason, record, log)
when it ends: ``done``, ``skipped`` (complete already), ``refused`` (its input was refused: the reason),
``failed`` (it broke during the run: the reason and where its log is). The folder is named by the
submitting process in ``$DRIFTBENCH_OUTCOMES``, which local processes and SLURM jobs inherit. A job that
left no file (killed, out of memory, a node failure) is reported as failed with its scheduler log.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from methods.harness.atomic import write_file_atomic

ENV = "DRIFTBENCH_OUTCOMES"
STATUSES = ("done", "skipped", "refused", "failed")


@dataclass
class Outcome:
    num: int
    overrides: list[str]
    status: str
    reason: str | None = None
    record: str | None = None
    log: str | None = None
    extra: dict = field(default_factory=dict)

    def line(self, common: frozenset[str] = frozenset()) -> str:
        what = " ".join(o for o in self.overrides if o not in common) or "(defaults)"
        tail = {"done": self.record, "skipped": f"complete before, {self.record}"}.get(self.status, self.reason)
        log = f"; log: {self.log}" if self.status == "failed" and self.log else ""
        return f"  job {self.num:<3} {self.status:<8} {what}: {tail}{log}"


def new_folder(results_dir: str | Path) -> Path:
    """A fresh outcome folder under ``<results_dir>/sweeps/outcomes``, named in ``$DRIFTBENCH_OUTCOMES``."""
    folder = Path(results_dir).resolve() / "sweeps" / "outcomes" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(folder)
    return folder


def current_folder() -> Path | None:
    return Path(os.environ[ENV]) if os.environ.get(ENV) else None


def write(outcome: Outcome, folder: Path | None = None) -> None:
    folder = folder or current_folder()
    if folder is None:
        return
    text = json.dumps(asdict(outcome), indent=1)
    write_file_atomic(Path(folder) / f"{outcome.num}.json", lambda f: f.write(text), mode="w")


def read(folder: Path) -> dict[int, Outcome]:
    out = {}
    for path in Path(folder).glob("*.json"):
        try:
            o = Outcome(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        out[o.num] = o
    return out


def summarise(folder: Path, jobs: list[list[str]], prog: str, missing_log: str = "") -> int:
    """Print one line per job and a count; the number of jobs that were refused or failed."""
    found = read(folder)
    every = [found[num] if num in found else Outcome(num, overrides, "failed", "ended without a word (killed? out "
                                                     "of memory?)", log=missing_log or None)
             for num, overrides in enumerate(jobs)]
    common = frozenset.intersection(*(frozenset(o.overrides) for o in every)) if len(every) > 1 else frozenset()
    lines, counts = [], dict.fromkeys(STATUSES, 0)
    for o in every:                                  # each job shown by what sets it apart from the others
        counts[o.status] += 1
        lines.append(o.line(common))
    print(f"{prog}: {len(jobs)} job(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), flush=True)
    print("\n".join(lines), flush=True)
    return counts["refused"] + counts["failed"]
