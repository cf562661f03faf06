"""Process-level setup of a run: seeds, the device of this process, the per-process batch, compiling."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn

from framework.config.validation import ConfigError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of this process; under torchrun, `auto`/`cuda` mean the GPU of this process's local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is available; use trainer.device=cpu or auto.")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def per_rank_batch_size(global_batch_size: int, world_size: int, key: str = "dataset.batch_size") -> int:
    """`dataset.batch_size` is the global batch: each of the `world_size` processes takes an equal share."""
    if global_batch_size % world_size:
        raise ConfigError(f"{key}={global_batch_size} is the global batch size and must divide evenly over the "
                          f"{world_size} processes; use a multiple of {world_size}, e.g. "
                          f"{key}={max(world_size, global_batch_size // world_size * world_size)}.")
    return global_batch_size // world_size


def compile_model(model: nn.Module, **options: Any) -> None:
    """`torch.compile` the backbone and the neck in place (`Module.compile`, `options` passed on), so the state-dict
    keys, checkpoints and EMA stay as they are. The head is left eager: its assignment and post-processing have
    data-dependent shapes that would recompile on every batch."""
    for name in ("backbone", "neck"):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            part.compile(**options)
