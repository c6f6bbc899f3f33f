"""The paper's published tables (``results/published/``) and which of our runs share their setting.

Each CSV row may carry ``match``: ``key=value`` conditions on a record's resolved config joined by ``;``
(e.g. ``method.name=drifting;data.name=imagenet_latent;model.name=drift_b2``). A run whose config
satisfies every condition of a row is the same setting, and the report puts the row's numbers beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

PUBLISHED_DIR = Path(__file__).resolve().parents[2] / "results" / "published"


@dataclass
class PublishedTable:
    file: str
    table: str
    title: str
    setting: str
    frame: pd.DataFrame             # the table as the paper prints it (without the match column)
    matches: list[dict[str, str]]   # per row: the conditions ({} where no run of ours can match)

    def rows(self) -> list[dict[str, str]]:
        return self.frame.to_dict("records")


def parse_match(text) -> dict[str, str]:
    if not isinstance(text, str) or not text.strip():
        return {}
    out = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"bad match condition '{part}' (expected key=value)")
        out[key.strip()] = value.strip()
    return out


def load_published(directory: Path = PUBLISHED_DIR) -> tuple[list[PublishedTable], list[str]]:
    """The tables listed in ``index.csv`` in its order, and one line per file that could not be read."""
    index_path = Path(directory) / "index.csv"
    if not index_path.exists():
        return [], [f"{index_path}: missing (no published numbers to compare with)"]
    tables, problems = [], []
    for entry in pd.read_csv(index_path, dtype=str, keep_default_na=False).to_dict("records"):
        path = Path(directory) / entry["file"]
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            matches = [parse_match(t) for t in frame.get("match", pd.Series([""] * len(frame)))]
        except (OSError, ValueError, pd.errors.ParserError) as e:
            problems.append(f"{path}: {str(e).splitlines()[0]}")
            continue
        tables.append(PublishedTable(entry["file"], entry["table"], entry["title"], entry["setting"],
                                     frame.drop(columns=["match"], errors="ignore"), matches))
    return tables, problems


def config_value(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def satisfies(config: dict, conditions: dict[str, str]) -> bool:
    """All conditions hold (values compared as text, numbers by value: ``30000`` matches ``30000.0``)."""
    if not conditions:
        return False
    for key, want in conditions.items():
        have = config_value(config, key)
        if have is None:
            return False
        try:
            if float(have) != float(want):
                return False
        except (TypeError, ValueError):
            if str(have) != want:
                return False
    return True


def is_trajectory(table: PublishedTable) -> bool:
    """A quality trajectory during training (one row per training step), not a table of final numbers."""
    return "step" in table.frame.columns


def trajectories_for(config: dict, tables: list[PublishedTable]) -> list[tuple[PublishedTable, pd.DataFrame]]:
    """The published trajectories whose setting this run shares, with their matching rows."""
    out = []
    for t in tables:
        rows = [i for i, cond in enumerate(t.matches) if is_trajectory(t) and satisfies(config, cond)]
        if rows:
            out.append((t, t.frame.iloc[rows]))
    return out


def matches_for(config: dict, tables: list[PublishedTable]) -> list[dict]:
    """Every published row of final numbers whose setting this run shares: table, row cells (as text)."""
    out = []
    for t in tables:
        if is_trajectory(t):
            continue
        for i, cond in enumerate(t.matches):
            if satisfies(config, cond):
                row = t.rows()[i]
                out.append({"table": t.table, "title": t.title, "row": {k: v for k, v in row.items() if v != ""}})
    return out
