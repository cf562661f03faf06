"""checkpoints/last.pth after every epoch, best.pth when the watched metric improves, epoch_N.pth every N epochs
keeping the newest K (mmdetection's CheckpointHook, ultralytics' last.pt/best.pt). Written atomically."""
from __future__ import annotations

import logging
import math
from typing import Any

from framework.config.validation import ConfigError
from framework.engine.callbacks.base import Callback
from framework.engine.checkpoint import prune_checkpoints
from framework.evaluation.metric_names import LEGACY_NAMES, canonical_metric_name, task_of

logger = logging.getLogger("framework")


class Checkpoint(Callback):
    order = 90  # after everything that changes the state an epoch ends with

    def __init__(self, metric: str, interval: int, keep: int | None) -> None:
        metric = canonical_metric_name(metric)  # `bbox_mAP` (an old config) → `bbox/mAP`, with a warning
        self.metric, self.interval, self.keep = metric, interval, keep
        self.best: dict[str, Any] = {"metric": metric, "value": float("-inf"), "epoch": None}

    def on_eval_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric)
        if value is None:
            hint = ""
            if task_of(self.metric) == "segm":
                hint = (" segm/… metrics need a model that predicts masks (a mask head, e.g. model=mask_rcnn_r50_fpn"
                        " or model=yolo_seg_cspdarknet_s); a box model has bbox/… only.")
            raise ConfigError(f"trainer.best_metric={self.metric} is not among the metrics: {', '.join(metrics)}."
                              f"{hint}")
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
        saved = dict(checkpoint.get("best", {}))
        saved_metric = LEGACY_NAMES.get(saved.get("metric", self.metric), saved.get("metric", self.metric))
        if saved_metric != self.metric:  # best_metric changed on resume: the old best is of another number
            logger.info(f"The checkpoint's best.pth was chosen on {saved_metric}; now on {self.metric}, from scratch")
            saved = {}
        self.best = {**self.best, **saved, "metric": self.metric}
        trainer.results["best"] = dict(self.best)

    def on_train_end(self, trainer: Any) -> None:
        best = f"{self.best['value']:.4f} at epoch {self.best['epoch']}" if self.best["epoch"] else "not reached"
        logger.info(f"Done. Best {self.metric} = {best}; checkpoints in {trainer.work_dir / 'checkpoints'}")
