"""A tuning study's bookkeeping (``python -m bench.tune``), without torch: where it lives, how it resumes,
the objective read off a trial's run record, and what it leaves behind.

- ``<results>/tune/<method>_<data>/study.db``: the Optuna storage (sqlite); ``records/``: every trial's run
  record; ``study.json``: the study as data (objective, budget, search space, every trial's parameters,
  values on the validation split and chosen weights, the winner); the winner also becomes a preset
  ``bench/conf/tuned/<method>_<data>_tuned.yaml`` that ``tuning=tuned`` applies.
- Resume: a trial left RUNNING by a killed process is marked FAIL (``interrupted``) and its parameters are
  queued again, so the re-run trains the same run id and continues from its checkpoint; interrupted
  trials do not count against the budget, finished and diverged ones do (a repeat of an earlier trial's
  parameters does not: the sampler is reseeded by the number of stored trials). The winner comes from the first
  ``tune.trials`` counted trials, so a study that ran further is cut to the same budget as the others.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from bench import record as rec
from bench.errors import ConfigError

STUDY_SCHEMA = 1
PRESET_DIR = Path(__file__).parent / "conf" / "tuned"
SWEEP_VALUE = ("choice(", "range(", "interval(", "tag(")


def study_dir(results_dir: str | Path, method: str, data: str) -> Path:
    return Path(results_dir) / "tune" / f"{method}_{data}"


def storage_url(directory: Path) -> str:
    return f"sqlite:///{Path(directory).resolve() / 'study.db'}"


def is_sweep(value: str) -> bool:
    return str(value).strip().startswith(SWEEP_VALUE)


def trial_tag(overrides: dict[str, object]) -> str:
    """The run tag of a trial: a hash of its sampled parameters (the same parameters resume the same run)."""
    text = "\n".join(sorted(f"{k}={v}" for k, v in overrides.items()))
    return "trial-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def optuna():
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")    # optuna 2.10 on SQLAlchemy 1.4
    import optuna as _optuna

    _optuna.logging.set_verbosity(_optuna.logging.WARNING)
    return _optuna


def load_study(storage: str, name: str):
    o = optuna()
    try:
        return o.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def counted_trials(trials: list, states) -> list:
    """The trials that count against the budget, in order: finished or failed (diverged), not interrupted,
    and not a repeat of an earlier counted trial's parameters (a repeat trains nothing new)."""
    out, seen = [], set()
    for t in sorted(trials, key=lambda t: t.number):
        key = tuple(sorted((k, str(v)) for k, v in t.params.items()))
        if t.state in (states.COMPLETE, states.FAIL) and not t.user_attrs.get("interrupted") and key not in seen:
            seen.add(key)
            out.append(t)
    return out


def prepare_resume(storage: str, name: str) -> tuple[int, int, int]:
    """(trials that count against the budget, trials re-queued after an interruption, trials stored)."""
    study = load_study(storage, name)
    if study is None:
        return 0, 0, 0
    states = optuna().trial.TrialState
    requeued = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == states.RUNNING:               # this process holds the study's lock: nobody runs it
            study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            study._storage.set_trial_state(t._trial_id, states.FAIL)
            study.enqueue_trial(t.params)
            requeued += 1
    trials = study.get_trials(deepcopy=False)
    return len(counted_trials(trials, states)), requeued, len(trials)


def objective(record: dict, tune: dict) -> tuple[float, str, dict]:
    """(value, chosen weights, metric values by weights and NFE) of one trial on the validation split:
    for each kept weights the mean over ``tune["nfe"]`` of log10(max(``tune["metric"]``, ``tune["clip"]``)),
    and the best of those (lower is better). On logs a factor of 10 counts the same at every NFE (a plain
    mean lets one catastrophic few-step point, EDM's 2-step Heun at energy 50-400, outweigh everything);
    below ``clip`` differences are inside the data floor's spread."""
    metric, nfes, weights, clip = tune["metric"], tune["nfe"], tune["weights"], tune["clip"]
    points: dict[str, dict[str, dict]] = {}
    for ev in record["evals"]:
        if ev.get("split") == "validation" and ev["weights"] in weights and ev["nfe"] in nfes:
            points.setdefault(ev["weights"], {})[str(ev["nfe"])] = ev["metrics"]
    scores = {}
    for w in weights:
        vals = [(points.get(w, {}).get(str(n)) or {}).get(metric) for n in nfes]
        scores[w] = math.inf if any(v is None for v in vals) else \
            sum(math.log10(max(v, clip)) for v in vals) / len(vals)
    best = min(weights, key=lambda w: scores[w])
    return scores[best], best, points


def trial_rows(study, records_dir: Path, prefix: str, tune: dict) -> list[dict]:
    states = optuna().trial.TrialState
    rows = []
    for t in study.get_trials(deepcopy=False):
        run_id = f"{prefix}-{trial_tag(t.params)}"
        path = Path(records_dir) / f"{run_id}.json"
        record = rec.read(path) if path.exists() else None
        row = {"number": t.number, "state": t.state.name, "params": t.params, "value": t.value, "run_id": run_id,
               "interrupted": bool(t.user_attrs.get("interrupted")),
               "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
               if t.datetime_complete and t.datetime_start else None}
        if record is not None:
            value, weights, points = objective(record, tune)
            row.update(weights=weights, points=points, train_status=record["train"].get("status"),
                       train_seconds=record["train"].get("wall_seconds"))
            if t.state == states.COMPLETE:
                row["value"] = value
        rows.append(row)
    return rows


def export(storage: str, name: str, directory: Path, tune: dict, info: dict, preset_dir: Path = PRESET_DIR) -> Path:
    """Write ``study.json`` and the winner's preset; returns the preset's path."""
    study = load_study(storage, name)
    if study is None:
        raise ConfigError(f"no study '{name}' in {storage}: run python -m bench.tune first")
    rows = trial_rows(study, directory / "records", info["run_prefix"], tune)
    numbers = {t.number for t in counted_trials(study.get_trials(deepcopy=False), optuna().trial.TrialState)}
    for r in rows:
        r["repeat"] = r["state"] in ("COMPLETE", "FAIL") and not r["interrupted"] and r["number"] not in numbers
    counted = [r for r in rows if r["number"] in numbers]
    for r in counted[tune["trials"]:]:                   # a larger earlier study: the same budget for every method
        r["beyond_budget"] = True
    for r in rows:                                       # what the budget counts, for readers without optuna
        r["counted"] = r["number"] in numbers and not r.get("beyond_budget")
    done = [r for r in counted[:tune["trials"]] if r["state"] == "COMPLETE" and r.get("weights")]
    if not done:
        raise ConfigError(f"study '{name}' has no finished trial yet")
    best = min(done, key=lambda r: r["value"])
    out = {"schema": STUDY_SCHEMA, "study": name, **info, "objective": {
        "metric": tune["metric"], "direction": "minimize", "split": "validation", "nfe": tune["nfe"],
        "weights": tune["weights"], "reduce": f"mean over the NFE of log10(max(metric, {tune['clip']:g})), "
                                              f"then the best weights",
        "n_samples": tune["num_samples"], "eval_seed": tune["eval_seed"], "train_seed": tune["seed"]},
        "budget": {"trials": tune["trials"], "counted": min(len(counted), tune["trials"])},
        "trials": rows, "best": {k: best[k] for k in ("number", "value", "params", "weights", "run_id")},
        "written": rec.now()}
    (directory / "study.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    return write_preset(preset_dir, info["method"], info["data"], best, out)


def write_preset(preset_dir: Path, method: str, data: str, best: dict, study: dict) -> Path:
    """``<method>_<data>_tuned.yaml``: the winner's parameters and chosen weights, citing its study."""
    import yaml

    tree: dict = {}
    for key, value in sorted(best["params"].items()):
        node = tree
        *parents, leaf = key.lstrip("+").split(".")      # "++key": a value a conditional branch fixes
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(str(value)) if isinstance(value, str) else value
    tree.setdefault("eval", {})["weights"] = [best["weights"]]
    o = study["objective"]
    head = (f"# @package _global_\n# bench.tune's winner for method={method} data={data} (applied by tuning=tuned):\n"
            f"# Optuna trial #{best['number']}, the best of {study['budget']['counted']} counted trials (trial numbers "
            f"also count interrupted and repeated ones),\n# objective {best['value']:.4g} on the validation split "
            f"({o['reduce']}; NFE {o['nfe']}; weights {', '.join(o['weights'])}).\n"
            f"# The study: results/tune/{study['study']}/study.json\n")
    path = Path(preset_dir) / f"{method}_{data}_tuned.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + yaml.safe_dump(tree, sort_keys=True))
    return path
