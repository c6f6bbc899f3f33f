"""Tasks are peers (DESIGN.md section 9): ``task=NAME`` picks one module here, each with
``prepare(plain, top) -> spec`` (validate everything it needs, write nothing) and ``execute(spec) -> Path``.

The table names modules, imported only when their task runs, so no task pays for another's imports, and
``precheck`` refuses what can be checked without torch before any of them is imported.
``execute`` holds the run's lock (``bench/lock.py``) around the task, and turns a full or read-only disk
into one line (``bench.errors.disk_error``)."""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from omegaconf import DictConfig

from bench.config import EvalConfig, TopConfig, plain_config, typed
from bench.errors import ConfigError, RunError, disk_error
from bench.writable import check_folder
from methods.harness.train_config import TrainConfig

TASKS: dict[str, str] = {
    "train": "bench.tasks.train",                        # train (or resume), evaluate, record
    "pretrain_encoder": "bench.tasks.pretrain_encoder",  # MAE feature encoder of feature-space drifting
    "cache_latents": "bench.tasks.cache_latents",        # SD-VAE latent cache of data=imagenet_latent
    "evaluate": "bench.tasks.evaluate",                  # evaluate a run's kept checkpoints, no training
}
# Sections each task reads whose schema imports no torch: checked by ``precheck``.
LIGHT_SECTIONS: dict[str, tuple[tuple[str, type], ...]] = {
    "train": (("train", TrainConfig), ("eval", EvalConfig)),
}


def task_module(name: str) -> ModuleType:
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name])


def top_config(plain: dict) -> TopConfig:
    top = typed("", TopConfig, {k: plain[k] for k in ("seed", "tag", "device", "results_dir", "task")})
    if top.task not in TASKS:
        raise ConfigError(f"unknown task '{top.task}'; choose one of: {', '.join(TASKS)}")
    check_folder("results_dir", top.results_dir)
    return top


def precheck(cfg: DictConfig) -> None:
    """The checks that need no torch (top-level keys, results_dir, the torch-free sections' types and
    ranges), so that most mistakes are refused before the heavy imports of ``prepare``."""
    plain = plain_config(cfg)
    top = top_config(plain)
    for section, schema in LIGHT_SECTIONS.get(top.task, ()):
        value = typed(section, schema, plain[section])
        if hasattr(value, "validate"):
            try:
                value.validate()
            except ValueError as e:
                raise ConfigError(str(e)) from None


def prepare(cfg: DictConfig):
    """Validate a composed config for its task and build what the task needs (nothing runs)."""
    plain = plain_config(cfg)
    top = top_config(plain)
    return task_module(top.task).prepare(plain, top)


def execute(spec) -> Path:
    from bench.lock import hold_run
    from methods.harness.checkpoint import CheckpointError     # imports torch: only once a task runs

    module = task_module(spec.top.task)
    waits = getattr(module, "waits_for_lock", None)          # e.g. evaluations of a finished run take turns
    run_id = getattr(spec, "run_id", None)                   # None: a task without a run (the latent cache,
    run_dir = Path(spec.top.results_dir) / "runs" / (run_id or "")    # whose shards share its folder by design)
    try:
        if run_id is None:
            return module.execute(spec)
        with hold_run(run_dir, wait=bool(waits and waits(spec)), device=spec.top.device):
            return module.execute(spec)
    except (ConfigError, RunError):
        raise
    except CheckpointError as e:
        raise RunError(str(e)) from None
    except (OSError, RuntimeError) as e:
        err = disk_error(e, str(run_dir))
        if err is None:
            raise
        raise err from None
