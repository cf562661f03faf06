"""torch.distributed for the trainer: one process per device, started by torchrun (or SLURM through submitit).

Kept to what the trainer needs (rank, world size, the device of this process, rank-0 decisions shared with all
ranks) so the training loop reads the same in one process and in many. Nothing here is called per iteration
except `all_reduce_mean` at log intervals and `any_rank` when a wall-clock budget is set.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from framework.config.validation import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """This process's place, from torchrun's variables, else SLURM's (one task per device), else a single process."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return DistInfo(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return DistInfo()


def _export_slurm_rendezvous() -> None:
    """Under SLURM without torchrun, let submitit fill MASTER_ADDR/PORT, RANK, WORLD_SIZE from the job."""
    if "MASTER_ADDR" in os.environ:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:
        raise ConfigError("This is a multi-task SLURM job but neither torchrun nor submitit set up the rendezvous: "
                          "launch through hydra/launcher=submitit_slurm (pip install -e '.[slurm]') or run torchrun "
                          "inside the job.") from None
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init_distributed(timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group if this process was started as one of several; idempotent.

    The backend covers both devices ("cpu:gloo,cuda:nccl"): gradients on GPUs go through NCCL, while small CPU
    objects (the run folder name, metrics for early stopping) go through gloo.
    """
    info = env_info()
    if not info.enabled or (dist.is_available() and dist.is_initialized()):
        return info
    if "SLURM_PROCID" in os.environ and "RANK" not in os.environ:
        _export_slurm_rendezvous()
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
    dist.init_process_group(backend, rank=info.rank, world_size=info.world_size,
                            timeout=timedelta(minutes=timeout_minutes))
    return info


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), env_info().local_rank)
    return DistInfo()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` as held by rank `src`, on every rank (unchanged outside torch.distributed)."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not current().enabled:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mean over ranks of each scalar (one collective for all of them)."""
    if not current().enabled or not values:
        return values
    stacked = torch.stack([v.detach().float().reshape(()) for v in values.values()])
    dist.all_reduce(stacked)
    stacked /= dist.get_world_size()
    return dict(zip(values, stacked.unbind()))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if `flag` is true on any (so all ranks stop at the same step)."""
    if not current().enabled:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP synchronizes buffers at the start of each training forward, and each rank then updates them with its own
    batch; evaluating without this would score every shard with slightly different statistics than the weights
    rank 0 saves, and the distributed numbers would not equal a single-process evaluation of the checkpoint."""
    if current().enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
