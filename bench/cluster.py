"""Where a command's jobs will run, checked before anything is submitted (no torch).

``launch_plan`` reads the composed Hydra launcher: ``local`` (jobs in this process), ``submitit_local``
(local submitit processes) or ``slurm`` (SLURM jobs), the number of processes each job will have
(``nodes x tasks_per_node``: jobs are validated for that world size, ``planned_world``) and the launcher
parameters (for ``bench.suite``'s job array). ``check_scheduler`` refuses ``launcher=slurm`` in one line
where no scheduler answers, so nothing is ever run locally in its place.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError

NO_SLURM = ("launcher=slurm: {why}; submit from a login node of a SLURM cluster, or run here with "
            "launcher=local or launcher=submitit_local")


@dataclass
class LaunchPlan:
    kind: str                        # local | submitit_local | slurm
    world: int = 1                   # processes per job
    params: dict = field(default_factory=dict)

    @property
    def submits(self) -> bool:
        return self.kind != "local"


def launch_plan(cfg: DictConfig) -> LaunchPlan:
    """The launcher of a composed config (``compose_config``'s, with the Hydra node)."""
    launcher = cfg.hydra.launcher
    target = str(launcher.get("_target_", ""))
    kind = "slurm" if target.endswith("SlurmLauncher") else "submitit_local" if target.endswith("LocalLauncher") \
        else "local"
    profile = cfg.hydra.runtime.choices.get("cluster")
    if profile and kind != "slurm":
        raise ConfigError(f"cluster={profile} is a SLURM profile; add launcher=slurm")
    if kind == "local":
        return LaunchPlan(kind)
    params = OmegaConf.to_container(launcher, resolve=True)
    return LaunchPlan(kind, int(params.get("nodes") or 1) * int(params.get("tasks_per_node") or 1), params)


def check_scheduler(plan: LaunchPlan) -> None:
    """One line when ``launcher=slurm`` has no scheduler to talk to (before anything is submitted)."""
    if plan.kind != "slurm":
        return
    if shutil.which("sbatch") is None:
        raise ConfigError(NO_SLURM.format(why="no SLURM scheduler here (sbatch is not on PATH)"))
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(NO_SLURM.format(why=f"the scheduler does not answer (sinfo: {e})")) from None
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(NO_SLURM.format(why=f"the scheduler does not answer (sinfo: {err})"))


@contextlib.contextmanager
def planned_world(world: int):
    """Validate as a process of a ``world``-process job would (``WORLD_SIZE`` for the duration only)."""
    if world <= 1 or "WORLD_SIZE" in os.environ:
        yield
        return
    os.environ.update(WORLD_SIZE=str(world), RANK="0")
    try:
        yield
    finally:
        os.environ.pop("WORLD_SIZE")
        os.environ.pop("RANK")
