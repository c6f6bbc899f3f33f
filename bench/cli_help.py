"""``python -m bench.run --help``: the real choices of every config group and the top-level keys, read
from ``bench/conf`` itself (no Hydra, no torch), in a screenful, pointing to the README for the rest."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

CONF = Path(__file__).parent / "conf"
README = Path(__file__).resolve().parents[1] / "README.md"


def groups() -> list[tuple[str, str, list[str]]]:
    """(group, default, choices) of every group in ``config.yaml``'s defaults list that a user picks
    (``optional`` presets and Hydra's own groups left out)."""
    out = []
    for entry in yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            (group, default), = entry.items()
            if " " not in group and "/" not in group:
                out.append((group, str(default), sorted(p.stem for p in (CONF / group).glob("*.yaml"))))
    return out


def top_keys() -> list[tuple[str, str, str]]:
    """(key, default, comment) of the top-level keys of ``config.yaml`` (the lines ``key: value  # ...``)."""
    found = re.findall(r"^([a-z_]+):[ \t]*([^#\n]*?)[ \t]*#[ \t]*(.*)$", (CONF / "config.yaml").read_text(), re.M)
    return [(k, v, c) for k, v, c in found if k not in ("defaults", "hydra")]


def usage() -> str:
    lines = ["usage: python -m bench.run [-m] [KEY=VALUE | GROUP=CHOICE ...]",
             "",
             "Train (or resume) one run, evaluate it and write its record in <results_dir>/records; -m runs a",
             "sweep over comma-separated values (seed=0,1,2). Every job is validated before anything runs.",
             "",
             "config groups (GROUP=CHOICE; then GROUP.KEY=VALUE sets one of its keys, e.g. train.steps=500):"]
    rows = groups()
    width = max(len(g) for g, _, _ in rows)
    lines += [f"  {g:<{width}}  {', '.join(c)}  [default {d}]" for g, d, c in rows]
    lines += ["", "top-level keys (KEY=VALUE):"]
    keys = top_keys()
    width = max(len(k) for k, _, _ in keys)
    lines += [f"  {k:<{width}}  {c}  [default {v}]" for k, v, c in keys]
    lines += ["",
              "python -m bench.run --cfg job [overrides] prints the composed config; --hydra-help lists Hydra's flags.",
              f"Every key is explained in {README} (section 'One run')."]
    return "\n".join(lines)
