"""checkpoints/last.pth after every epoch, best.pth when the watched metric improves, epoch_N.pth every N epochs
keeping the newest K (mmdetection's CheckpointHook, ultralytics' last.pt/best.pt). Written atomically."""
from __future__ import annotations

import logging
import math
from typing import Any

from framework.config.validation import ConfigError
from framework.engine.callbacks.base import Callback
from framework.engine.checkpoint import prune_checkpoints

logger = logging.getLogger("framework")


class Checkpoint(Callback):
    order = 90  # after everything that changes the state an epoch ends with

    def __init__(self, metric: str, interval: int, keep: int | None) -> None:
        self.metric, self.interval, self.keep = metric, interval, keep
        self.best: dict[str, Any] = {"metric": metric, "value": float("-inf"), "epoch": None}

    def on_eval_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric)
        if value is None:
            raise ConfigError(f"trainer.best_metric={self.metric} is not among the metrics: {', '.join(metrics)}")
        if math.isnan(value):
            logger.warning(f"{self.metric} is NaN (no class has ground truth in the validation set): "
                           "best.pth not updated")
        elif value > self.best["value"]:
            self.best = {"metric": self.metric, "value": float(value), "epoch": trainer.epoch}
            trainer.save("best.pth")
            logger.info(f"New best {self.metric} = {value:.4f}: saved best.pth")
        trainer.results["best"] = dict(self.best)

    def on_epoch_end(self, trainer: Any) -> None:
        trainer.save("last.pth")
        if self.interval and trainer.epoch % self.interval == 0:
            trainer.save(f"epoch_{trainer.epoch}.pth")
            if trainer.dist.is_main:
                prune_checkpoints(trainer.work_dir / "checkpoints", self.keep)

    def on_checkpoint(self, trainer: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint["best"] = dict(self.best)

    def on_resume(self, trainer: Any, checkpoint: dict[str, Any]) -> None:
        self.best = {**self.best, **checkpoint.get("best", {})}
        trainer.results["best"] = dict(self.best)

    def on_train_end(self, trainer: Any) -> None:
        best = f"{self.best['value']:.4f} at epoch {self.best['epoch']}" if self.best["epoch"] else "not reached"
        logger.info(f"Done. Best {self.metric} = {best}; checkpoints in {trainer.work_dir / 'checkpoints'}")
