"""Like-for-like comparisons in a suite (``bench.suite``), without torch.

The jobs a report section compares (one group of a suite, on one data set) must agree on what makes a
comparison fair: the conditioning (class-conditional or not), the training budget in images seen
(``train.steps x train.batch_size``) and the evaluation sample count (Frechet distances and coverage
at different sample counts are not comparable). A suite that compares jobs differing in any of them is
refused before anything runs, naming the keys and the jobs, unless it declares the difference::

    differences:
      images_seen: "drifting's queues see 64 real images per step (the release's push_per_step)"

Declared differences go into the suite's manifest and the report prints them above the tables.

``choose_weights: validation`` in a suite adds to every job a twin that evaluates the same points on the
validation split: the report then shows, per method, the weights (raw or an EMA) that did best there.
"""
from __future__ import annotations

from collections import defaultdict

from bench.errors import ConfigError

COMPARED = ("conditional", "images_seen", "n_samples")
ABOUT = {"conditional": "method.conditional", "images_seen": "images seen (train.steps x train.batch_size)",
         "n_samples": "eval.num_samples"}
VALIDATION_SEED = 7_000_000       # noise seeds of the validation twins (the report's are eval.seed)


def compared_values(config: dict, n_samples: int) -> dict:
    train = config.get("train") or {}
    return {"conditional": bool((config.get("method") or {}).get("conditional", False)),
            "images_seen": int(train.get("steps", 0)) * int(train.get("batch_size", 0)), "n_samples": n_samples}


def check_like_for_like(jobs: list[dict], declared: dict[str, str] | None) -> None:
    """``jobs``: dicts with label, group, data, split and ``values`` (``compared_values``). A ConfigError
    names every key on which the jobs of one comparison differ and that the suite did not declare."""
    declared = declared or {}
    unknown = sorted(set(declared) - set(COMPARED))
    if unknown:
        raise ConfigError(f"differences: unknown key(s) {unknown}; declare one of {', '.join(COMPARED)}")
    by_section = defaultdict(list)
    for j in jobs:
        if j.get("split", "test") == "test":
            by_section[(j["group"], j["data"])].append(j)
    problems = []
    for (group, data), part in by_section.items():
        for key in COMPARED:
            seen = defaultdict(set)
            for j in part:
                seen[j["values"][key]].add(j["label"])
            if len(seen) > 1 and key not in declared:
                shown = "; ".join(f"{', '.join(sorted(labels))}: {value}" for value, labels in seen.items())
                where = f"{group}: {data}" if group else data
                problems.append(f"{ABOUT[key]} differs in the comparison '{where}' ({shown})")
    if problems:
        raise ConfigError("the jobs compared are not like for like: " + "; ".join(problems)
                          + "; make them equal or declare the difference under 'differences' in the suite file")


def validation_twin(overrides: list[str]) -> list[str]:
    """The overrides of a job's twin on the validation split (same run, other evaluation points)."""
    return [*overrides, "eval.split=validation", f"eval.seed={VALIDATION_SEED}"]
