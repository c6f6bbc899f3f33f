"""Process-group and device set-up from torchrun's or SLURM's environment."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_rank_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun (RANK/WORLD_SIZE/LOCAL_RANK) or SLURM tasks."""
    env = os.environ
    if "WORLD_SIZE" in env:
        return int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if int(env.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def select_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks this process's GPU when there is one, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={requested} but no CUDA device is visible; use device=cpu or device=auto")
        return torch.device(requested if ":" in requested else f"cuda:{local_rank}")
    if requested != "cpu":
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got '{requested}'")
    return torch.device("cpu")


def init_distributed(requested_device: str = "auto") -> DistEnv:
    """Join the process group when launched by torchrun/SLURM with several processes."""
    rank, world, local_rank = env_rank_world()
    device = select_device(requested_device, local_rank)
    if world > 1 and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:  # SLURM without torchrun: rendezvous on the first node
            os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
            os.environ.setdefault("MASTER_PORT", "29500")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistEnv(rank, world, local_rank, device)


def barrier(env: DistEnv) -> None:
    if env.world > 1:
        dist.barrier()


def all_true(flag: bool, env: DistEnv) -> bool:
    """True on every rank iff ``flag`` is true on every rank."""
    if env.world == 1:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=env.device)
    dist.all_reduce(t)
    return t.item() == 0.0
