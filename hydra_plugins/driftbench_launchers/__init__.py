"""driftbench's Hydra launchers: hydra-submitit-launcher's, reporting every job (Hydra instantiates launchers
only from the ``hydra_plugins`` namespace, so they live here).

The plugin's ``launch`` waits for each job's result and lets the first job that died without one
(killed, out of memory, a node failure) end the whole sweep in a traceback, before the other jobs are
even collected. These subclasses submit the same array with the same parameters, print the scheduler's
job id of each job, collect every job, and record a job that died as ``failed`` with its log
(``bench.outcomes``), so the submitting command can report each job and exit non-zero. The callable
submitted is the launcher itself, whose ``checkpoint`` (the plugin's) resubmits the job unchanged on
preemption: runs resume by run id.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as plugin
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from bench import outcomes

INIT_KEYS = ("submitit_folder", "max_num_timeout", "_target_")


def make_executor(kind: str, params: dict[str, Any]):
    """A submitit executor from launcher parameters, mapped as the plugin maps them (``slurm_`` prefix for
    the keys that are not shared by all executors)."""
    import submitit

    init = {"folder": params["submitit_folder"]}
    if "max_num_timeout" in params:
        init[f"{kind}_max_num_timeout"] = params["max_num_timeout"]
    executor = submitit.AutoExecutor(cluster=kind, **init)
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"{kind}_{k}": v for k, v in params.items()
                                  if k not in INIT_KEYS})
    return executor


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def collect(jobs, nums: list[int], overrides: list[list[str]]) -> list[Any]:
    """Each job's result, waiting for all of them; a job that died is recorded as failed (result None)."""
    results = []
    for num, over, job in zip(nums, overrides, jobs):
        try:
            results.append(job.results()[0])
        except Exception as e:   # noqa: BLE001 (submitit's UncompletedJobError / FailedJobError and kin)
            outcomes.write(outcomes.Outcome(num, over, "failed", f"the job ended without a result ({first_line(e)})",
                                            log=str(job.paths.stderr)))
            results.append(None)
    return results


class _Reporting:
    _EXECUTOR: str

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        executor = make_executor(self._EXECUTOR, self.params)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        nums = [initial_job_idx + i for i in range(len(job_overrides))]
        params = [(list(o), "hydra.sweep.dir", n, f"job_id_for_{n}", Singleton.get_state())
                  for n, o in zip(nums, job_overrides)]
        jobs = executor.map_array(self, *zip(*params))
        shown = [filter_overrides(list(o)) for o in job_overrides]
        for n, over, job in zip(nums, shown, jobs):
            print(f"submitted job {n} as {self._EXECUTOR} job {job.job_id}: {' '.join(over)}", flush=True)
        returns = []
        for over, result in zip(job_overrides, collect(jobs, nums, shown)):
            if result is None:
                result = JobReturn(overrides=list(over), status=JobStatus.COMPLETED)
                result.return_value = None
            returns.append(result)
        return returns


class SlurmLauncher(_Reporting, plugin.SlurmLauncher):
    pass


class LocalLauncher(_Reporting, plugin.LocalLauncher):
    pass
