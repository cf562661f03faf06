"""Stop early: after `patience` evaluations' worth of epochs without a better `metric`, or when the wall-clock
budget `max_time` (hours, this invocation's) is spent. With a budget, the number of epochs that fit is
re-estimated after every epoch and the schedule and close-mosaic are fitted to it (ultralytics' `time=`)."""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping

from framework.engine import distributed
from framework.engine.callbacks.base import Callback
from framework.evaluation.metric_names import LEGACY_NAMES, canonical_metric_name
from framework.engine.schedulers import fit_to_epochs
from framework.engine.time_budget import epochs_within_budget

logger = logging.getLogger("framework")


class EarlyStopping(Callback):
    order = 60

    def __init__(self, metric: str, patience: int | None = None, max_time: float | None = None) -> None:
        # `bbox_mAP` (an old config) → `bbox/mAP`, with a warning
        self.metric, self.patience, self.max_time = canonical_metric_name(metric), patience, max_time
        self.best, self.best_epoch = float("-inf"), 0

    def on_step_end(self, trainer: Any, losses: Mapping[str, float]) -> None:
        if self.max_time is not None and time.monotonic() - trainer.start_time > self.max_time * 3600:
            trainer.request_stop(f"trainer.max_time={self.max_time} h reached at epoch {trainer.epoch + 1}, "
                                 f"iteration {trainer.iter}")

    def on_eval_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric, math.nan)
        if not math.isnan(value) and value > self.best:
            self.best, self.best_epoch = float(value), trainer.epoch
        since = trainer.epoch - self.best_epoch
        if self.patience is not None and since >= self.patience and trainer.epoch < trainer.max_epochs:
            trainer.request_stop(f"early stopping: no better {self.metric} for {since} epochs "
                                 f"(trainer.patience={self.patience})")

    def on_epoch_end(self, trainer: Any) -> None:
        if self.max_time is None:
            return
        if time.monotonic() - trainer.start_time > self.max_time * 3600:
            trainer.request_stop(f"trainer.max_time={self.max_time} h reached at end of epoch {trainer.epoch}")
        elif trainer.stop_reason is None:
            self._fit_epochs(trainer)

    def _fit_epochs(self, trainer: Any) -> None:
        """Re-estimate how many epochs fit the budget (rank 0's estimate, on every rank) and fit the schedule and
        the pipeline to it."""
        done = trainer.epoch - trainer.first_epoch
        if done < 1 or trainer.epoch >= trainer.max_epochs:  # a run that reached its fitted end stays ended
            return
        elapsed = time.monotonic() - trainer.start_time
        fitted = trainer.first_epoch + epochs_within_budget(self.max_time * 3600, elapsed, done)
        fitted = int(distributed.broadcast_object(fitted))
        if fitted == trainer.max_epochs:
            return
        notes = fit_to_epochs(trainer.scheduler, fitted)
        logger.info(f"trainer.max_time={self.max_time} h: {elapsed / done:.1f} s per epoch, so {fitted} epochs fit "
                    f"(was {trainer.max_epochs}); schedule fitted: {trainer.scheduler.describe()}"
                    + "".join(f"; {n}" for n in notes))
        trainer.max_epochs = fitted

    def on_checkpoint(self, trainer: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint["early_stop"] = {"best": self.best, "best_epoch": self.best_epoch, "metric": self.metric}

    def on_resume(self, trainer: Any, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("early_stop")
        if saved is None:  # a checkpoint from before this callback: its best.pth record says the same
            best = checkpoint.get("best") or {}
            saved = {"best": best.get("value", float("-inf")), "best_epoch": best.get("epoch") or 0,
                     "metric": best.get("metric")}
        metric = saved.get("metric") or self.metric  # older checkpoints did not record it
        if LEGACY_NAMES.get(metric, metric) != self.metric:  # best_metric changed on resume: patience from here
            saved = {"best": float("-inf"), "best_epoch": trainer.epoch}
        self.best, self.best_epoch = float(saved["best"]), int(saved["best_epoch"])
