"""Tasks are peers (DESIGN.md section 9): ``task=NAME`` picks one module here, each with
``prepare(plain, top) -> spec`` (validate everything it needs, write nothing) and ``execute(spec) -> Path``.

The table names modules, imported only when their task runs, so no task pays for another's imports."""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from omegaconf import DictConfig

from bench.config import TopConfig, plain_config, typed
from bench.errors import ConfigError

TASKS: dict[str, str] = {
    "train": "bench.tasks.train",                        # train (or resume), evaluate, record
    "pretrain_encoder": "bench.tasks.pretrain_encoder",  # MAE feature encoder of feature-space drifting
    "cache_latents": "bench.tasks.cache_latents",        # SD-VAE latent cache of data=imagenet_latent
    "evaluate": "bench.tasks.evaluate",                  # evaluate a run's kept checkpoints, no training
}


def task_module(name: str) -> ModuleType:
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name])


def prepare(cfg: DictConfig):
    """Validate a composed config for its task and build what the task needs (nothing runs)."""
    plain = plain_config(cfg)
    top = typed("", TopConfig, {k: plain[k] for k in ("seed", "tag", "device", "results_dir", "task")})
    return task_module(top.task).prepare(plain, top)


def execute(spec) -> Path:
    return task_module(spec.top.task).execute(spec)
