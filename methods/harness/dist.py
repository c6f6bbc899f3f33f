"""Process-group and device set-up from torchrun's, submitit's or SLURM's environment, and the few
collectives the harness and the methods share.

Inside a submitit job (``SUBMITIT_EXECUTOR`` is set: Hydra's submitit launcher, ``bench.suite
launcher=slurm``) the ranks, world size and rendezvous come from submitit's job environment
(``submitit.helpers.TorchDistributedEnvironment``: global and local rank, number of tasks, the first
node of the job as master, a port derived from the job id). Under torchrun they come from its variables;
under a bare ``srun`` from ``SLURM_PROCID``/``SLURM_NTASKS``. NCCL on GPUs, gloo on CPUs.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _submitit_tasks() -> int:
    """The number of tasks of the submitit job this process belongs to (0 outside one)."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return 0
    import submitit

    return submitit.JobEnvironment().num_tasks


def env_rank_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun (RANK/WORLD_SIZE/LOCAL_RANK), submitit or SLURM tasks."""
    env = os.environ
    if "WORLD_SIZE" in env:
        return int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if _submitit_tasks() > 1:
        import submitit

        job = submitit.JobEnvironment()
        return job.global_rank, job.num_tasks, job.local_rank
    if int(env.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def select_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks this process's GPU when there is one, else the CPU. A task that sees fewer GPUs than
    its node has (SLURM binding one GPU per task) takes ``local_rank`` modulo the visible count."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={requested} but no CUDA device is visible; use device=cpu or device=auto")
        return torch.device(requested if ":" in requested else f"cuda:{local_rank % torch.cuda.device_count()}")
    if requested != "cpu":
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got '{requested}'")
    return torch.device("cpu")


def _rendezvous() -> None:
    """MASTER_ADDR/MASTER_PORT for the env:// rendezvous when torchrun did not set them."""
    if "MASTER_ADDR" in os.environ:
        return
    if _submitit_tasks() > 1:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        return
    os.environ["MASTER_ADDR"] = os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1")  # bare srun
    os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", 9500)) % 40000))


def init_distributed(requested_device: str = "auto") -> DistEnv:
    """Join the process group when launched by torchrun/submitit/SLURM with several processes."""
    rank, world, local_rank = env_rank_world()
    device = select_device(requested_device, local_rank)
    if world > 1 and not dist.is_initialized():
        _rendezvous()
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
        atexit.register(_leave)
    return DistEnv(rank, world, local_rank, device)


def _leave() -> None:
    """At exit, destroy the process group while the interpreter is whole: left to the interpreter's
    teardown, gloo's worker threads can abort a rank after all its work is done ("terminate called
    without an active exception", exit -6)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.world > 1:
        dist.barrier()


def _flag_sum(flag: bool, env: DistEnv) -> float:
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t)
    return t.item()


def all_true(flag: bool, env: DistEnv) -> bool:
    """True on every rank iff ``flag`` is true on every rank."""
    return flag if env.world == 1 else _flag_sum(flag, env) == env.world


def any_true(flag: bool, env: DistEnv) -> bool:
    """True on every rank iff ``flag`` is true on some rank (e.g. one rank caught a preemption signal)."""
    return flag if env.world == 1 else _flag_sum(flag, env) > 0


def main_decides(flag: bool, env: DistEnv) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. rank 0's clock decides a time-based checkpoint)."""
    return flag if env.world == 1 else _flag_sum(flag and env.is_main, env) > 0


def gather_rows(t: Tensor) -> Tensor:
    """``t`` of every process concatenated in rank order (equal shapes), without gradients; ``t`` itself
    in a single process. Rank r's rows are global rows [r * n, (r + 1) * n) of the result."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return t.detach()
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.detach().contiguous())
    return torch.cat(parts)
