"""``python -m bench.tune method=X data=Y [key=value ...]``: tune one method on one dataset with Hydra's
Optuna sweeper (hydra-optuna-sweeper, TPE), under the same budget for every method.

- Search space: ``bench/conf/tune/<method>.yaml`` (``hydra.sweeper.params``), beside the method's config;
  ``bench/conf/tune/_shared.yaml`` holds what every method shares (optimiser lr, warmup, clipping) and the
  study's settings (``tune.*``): the number of trials, the training seed of the trials, the objective.
- Budget: every trial trains the composed run (``train=toy`` for the toys: the same images seen for every
  method) and every method gets ``tune.trials`` trials.
- Objective: ``tune.metric`` on the validation split (``eval.split=validation``: its own data seed, its own
  noise seeds ``tune.eval_seed``; never the reference the report shows), as log10(max(value, tune.clip))
  averaged over ``tune.nfe`` (null: the method's default grid), for each kept weights (raw and every EMA;
  choosing the EMA on the validation split is part of tuning), the best weights counting.
- Resume: the study lives in ``<results>/tune/<method>_<data>/study.db``; re-running the command continues
  until ``tune.trials`` distinct trials are done (``bench.tune_study``), then writes ``study.json`` and the preset
  ``bench/conf/tuned/<method>_<data>_tuned.yaml`` that ``tuning=tuned`` (and ``bench.suite toy``) apply.
  The winner's report runs use fresh training seeds (the suites' 0, 1, 2; trials use ``tune.seed``).
"""
from __future__ import annotations

import argparse
import fcntl
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from bench import record as rec
from bench import tune_study as ts
from bench.config import compose_config, group_choices
from bench.errors import ConfigError, RunError
from bench.tasks import execute, prepare

COMMAND_LINE: set[str] = set()       # keys bench.tune's own command line sets (not sampled)
SWEEPER = ("hydra/sweeper=optuna", "hydra.sweeper.direction=minimize", "hydra.sweeper.max_failure_rate=1.0",
           "hydra.sweeper.n_jobs=1")


def trial_settings(cfg: DictConfig) -> dict:
    """``tune.*`` with the NFE grid and the kept weights filled in from the run's own config."""
    tune = OmegaConf.to_container(cfg.tune, resolve=True)
    tune["weights"] = ["raw"] + [f"ema_{d:g}" for d in cfg.train.ema]
    tune["num_samples"] = cfg.eval.num_samples
    return tune


def trial_config(cfg: DictConfig, tune: dict, params: dict[str, str], results_dir: str) -> DictConfig:
    """The run a trial trains: the composed config with the trial's tag, seed and validation evaluation."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("tune")
        cfg.tag = ts.trial_tag(params)
        cfg.seed = tune["seed"]
        cfg.results_dir = results_dir
        cfg.eval.split, cfg.eval.seed, cfg.eval.nfe = "validation", tune["eval_seed"], tune["nfe"]
        cfg.eval.weights = tune["weights"]
        cfg.eval.metrics = tune["metrics"]
        cfg.eval.latency_repeats = 0            # timing plays no part in the objective
        cfg.train.progress = False
    return cfg


def sampled_params(cfg: DictConfig) -> dict[str, str]:
    """This trial's sampled values (the sweeper's overrides of the search-space keys), as strings."""
    fixed = {k for k, v in (HydraConfig.get().sweeper.params or {}).items() if not ts.is_sweep(v)}
    out = {}
    for o in HydraConfig.get().overrides.task:
        key, _, value = o.partition("=")
        if key not in fixed and key not in COMMAND_LINE:     # sampled: declared and conditional keys
            out[key] = value
    return out


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def run_trial(cfg: DictConfig) -> float:
    tune = trial_settings(cfg)
    spec = prepare(trial_config(cfg, tune, sampled_params(cfg), cfg.tune.results_dir))
    if tune["nfe"] is None:
        tune["nfe"] = spec.method.default_nfe()
    try:
        path = execute(spec)
    except RunError as e:                 # a diverged trial counts against the budget as FAIL
        raise RuntimeError(f"trial {spec.run_id} failed: {e}") from None
    value, weights, _ = ts.objective(rec.read(path), tune)
    print(f"{spec.run_id}: objective {value:.4g} (log10 {tune['metric']}) on the validation split ({weights})", flush=True)
    if value == float("inf"):
        raise RuntimeError(f"trial {spec.run_id}: no finite {tune['metric']} on the validation split")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.tune", description=__doc__.split("\n")[0])
    p.add_argument("overrides", nargs="*", help="bench.run overrides: method=X data=Y (and tune.* keys)")
    p.add_argument("--export-only", action="store_true", help="write study.json and the preset; run no trial")
    p.add_argument("--preset-dir", default=str(ts.PRESET_DIR), help="where the winner's preset goes")
    return p.parse_args(argv)


def study_setup(overrides: list[str]) -> tuple[DictConfig, dict, dict]:
    """Compose and validate the study's run (one line on a bad key or value, exit 2)."""
    try:
        import hydra_plugins.hydra_optuna_sweeper  # noqa: F401
    except ImportError:
        raise ConfigError("bench.tune needs Hydra's Optuna sweeper: pip install -e '.[tune]'") from None
    if any(o.split("=", 1)[0].lstrip("+~") in ("tuning", "seed", "tag", "eval.split") for o in overrides):
        raise ConfigError("bench.tune sets tuning, seed, tag and eval.split itself; set tune.seed for the "
                          "trials' training seed")
    base = compose_config([o for o in overrides if not o.lstrip("+~").startswith("tune.")])
    choices = group_choices(base)
    cfg = compose_config([*overrides, f"+tune={choices['method']}", "tuning=none", "hydra/sweeper=optuna"])
    tune = trial_settings(cfg)
    if not isinstance(tune.get("trials"), int) or tune["trials"] < 1:
        raise ConfigError(f"tune.trials must be a positive integer, got {tune.get('trials')!r}")
    directory = ts.study_dir(cfg.results_dir, choices["method"], choices["data"])
    spec = prepare(trial_config(cfg, tune, {}, str(directory)))        # validates every key before any trial
    info = {"method": choices["method"], "data": choices["data"], "model": choices["model"],
            "run_prefix": f"{choices['method']}-{choices['data']}-{choices['model']}-s{tune['seed']}",
            "search_space": {**OmegaConf.to_container(cfg.hydra.sweeper.params),
                             **({"conditional": cfg.hydra.sweeper.custom_search_space}
                                if cfg.hydra.sweeper.get("custom_search_space") else {})},
            "train": {k: spec.train.__dict__[k] for k in ("steps", "batch_size", "ema")},
            "images_per_trial": spec.train.steps * spec.train.batch_size}
    if tune["nfe"] is None:
        tune["nfe"] = spec.method.default_nfe()
    return cfg, tune, {**info, "directory": str(directory)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg, tune, info = study_setup(args.overrides)
    except ConfigError as e:
        print(f"bench.tune: error: {e}", file=sys.stderr)
        return 2
    directory = Path(info.pop("directory"))
    directory.mkdir(parents=True, exist_ok=True)
    name, storage = f"{info['method']}_{info['data']}", ts.storage_url(directory)
    with open(directory / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"bench.tune: error: study {name} is running in another process ({directory})", file=sys.stderr)
            return 2
        counted, requeued, stored = ts.prepare_resume(storage, name)
        todo = 0 if args.export_only else tune["trials"] - counted
        print(f"study {name}: {counted}/{tune['trials']} trial(s) done"
              + (f", {requeued} interrupted one(s) queued again" if requeued else "") + f"; storage {storage}")
        t0 = time.perf_counter()
        if todo > 0:
            sys.argv = ["bench.tune", "-m", *args.overrides, f"+tune={info['method']}", "tuning=none", *SWEEPER,
                        f"hydra.sweeper.n_trials={todo}", f"hydra.sweeper.storage={storage}",
                        f"hydra.sweeper.study_name={name}", f"hydra.sweeper.sampler.seed={tune['sampler_seed'] + stored}",
                        f"hydra.sweeper.sampler.n_startup_trials={tune['startup_trials']}",
                        f"hydra.sweep.dir={directory / 'sweep'}", f"+tune.results_dir={directory}"]
            COMMAND_LINE.update(o.split("=", 1)[0] for o in sys.argv[2:])
            run_trial()
        try:
            preset = ts.export(storage, name, directory, tune, {**info, "wall_seconds_this_call":
                                                                 round(time.perf_counter() - t0, 1)}, Path(args.preset_dir))
        except ConfigError as e:
            print(f"bench.tune: error: {e}", file=sys.stderr)
            return 1
    print(f"study {name}: {directory / 'study.json'}; preset {preset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
