"""What a training checkpoint holds and how a run continues from one: exactly, mid-epoch included.

Kept out of the loop so the loop reads as the algorithm. Callbacks add their own keys (`on_checkpoint`) and read
them back (`on_resume`): EMA weights, best metric, early-stop counters.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from framework.engine import distributed
from framework.engine.checkpoint import CheckpointError, load_checkpoint, rng_state, set_rng_state
from framework.engine.schedulers import load_scheduler_position

logger = logging.getLogger("framework")


def training_state(trainer: Any) -> dict[str, Any]:
    """Weights, optimizer, schedule position, scaler, counters, every rank's random generators and the config,
    then whatever the callbacks add. Collective under torchrun (the generators are gathered)."""
    state = {
        "model": trainer.eval_model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "scaler": trainer.scaler.state_dict() if trainer.scaler.is_enabled() else None,
        "epoch": trainer.epoch,
        "iter": trainer.iter,
        "batch_in_epoch": trainer.batch_in_epoch,
        "rng": distributed.gather_objects(rng_state()),
        "config": trainer.cfg,
        "meta": {"classes": list(trainer.classes), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "torch": str(torch.__version__), "world_size": trainer.dist.world_size},
    }
    trainer.call("on_checkpoint", state)
    return state


def restore_training_state(trainer: Any, path: str | Path) -> bool:
    """Continue from the checkpoint at `path`; False when it has nothing left to train."""
    ckpt = load_checkpoint(path, map_location=trainer.device, purpose="resume")
    trained = ckpt["epoch"]
    saved_max = ckpt.get("config", {}).get("trainer", {}).get("max_epochs", trained)
    if trained >= trainer.max_epochs and not ckpt.get("batch_in_epoch"):
        logger.info(f"{path} has already trained {trained} epochs (trainer.max_epochs={trainer.max_epochs}): nothing "
                    f"to do. To train longer, raise it: trainer.max_epochs={trained + max(trained, 1)} resume=…")
        return False
    try:
        trainer.model.load_state_dict(ckpt["train_model"] if ckpt.get("train_model") is not None else ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{path} does not fit this model ({' '.join(first[:2])[:300]}); resume a "
                              "checkpoint of the same model config.") from None
    if ckpt.get("optimizer") is not None:
        try:
            trainer.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as exc:  # other parameter groups: optimizer.paramwise or the model changed
            raise CheckpointError(
                f"Cannot resume the optimizer of {path}: {exc}. Its parameter groups differ from this config's "
                "(optimizer.paramwise, the optimizer or the model changed since it was written); resume with the "
                "run's own config, or start a new run.") from None
    if ckpt.get("scheduler") is not None and trainer.scheduler is not None:
        load_scheduler_position(trainer.scheduler, ckpt["scheduler"])
    if ckpt.get("scaler") is not None and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(ckpt["scaler"])
    trainer.epoch, trainer.iter = trained, ckpt["iter"]
    trainer.batch_in_epoch = ckpt.get("batch_in_epoch", 0)
    rngs = ckpt.get("rng") or []
    if len(rngs) == trainer.dist.world_size:
        set_rng_state(rngs[trainer.dist.rank])
    else:
        logger.warning(f"{path} was written by {len(rngs)} processes, this run has {trainer.dist.world_size}: the "
                       "random generators start afresh (the data order and augmentations are still restored).")
    trainer.resumed_from = Path(path)
    trainer.call("on_resume", ckpt)
    where = f"epoch {trained}" + (f" + {trainer.batch_in_epoch} batches" if trainer.batch_in_epoch else "")
    logger.info(f"Resumed from {path} at {where} (iteration {trainer.iter}).")
    if trained >= saved_max and trainer.max_epochs > saved_max:
        logger.info(f"Extending the finished {saved_max}-epoch run to {trainer.max_epochs} epochs.")
    return True
