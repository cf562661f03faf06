"""Evaluate every `interval` epochs and after the last one; hand the metrics to every callback (`on_eval_end`)
and to the logs. The pass itself is framework.engine.evaluation.Evaluation, shared with tools/test.py."""
from __future__ import annotations

from typing import Any

from framework.engine.callbacks.base import Callback
from framework.engine.evaluation import Evaluation


class EvalSchedule(Callback):
    order = 40  # after EMA and the pipeline, before what consumes the metrics at epoch end (checkpoint)

    def __init__(self, evaluation: Evaluation, interval: int) -> None:
        self.evaluation, self.interval = evaluation, max(1, interval)

    def on_epoch_end(self, trainer: Any) -> None:
        if trainer.epoch % self.interval and trainer.epoch != trainer.max_epochs:
            return
        result = self.evaluation.run(trainer.eval_model, epoch=trainer.epoch)
        trainer.last_eval = result
        trainer.results["last"] = result.metrics
        trainer.log("val", {"epoch": trainer.epoch, "iter": trainer.iter, **result.metrics})
        trainer.call("on_eval_end", result.metrics)
