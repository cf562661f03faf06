"""An exponential moving average of the weights (framework.engine.ema.ModelEMA), updated after every optimizer
step; it is what is evaluated and saved as the checkpoint's `model` (the raw weights go to `train_model`)."""
from __future__ import annotations

from typing import Any, Mapping

from framework.engine.callbacks.base import Callback
from framework.engine.ema import ModelEMA


class EMA(Callback):
    order = 10  # the average exists and is updated before evaluation reads it

    def __init__(self, decay: float, tau: float, enabled: bool = True) -> None:
        self.enabled, self.decay, self.tau = enabled, decay, tau
        self.ema: ModelEMA | None = None

    def _attach(self, trainer: Any) -> ModelEMA | None:
        if self.enabled and self.ema is None:
            self.ema = ModelEMA(trainer.model, self.decay, self.tau)
            trainer.eval_model = self.ema.module
        return self.ema

    def on_resume(self, trainer: Any, checkpoint: dict[str, Any]) -> None:
        if self._attach(trainer) is not None:
            self.ema.load_state_dict({"module": checkpoint["model"], **(checkpoint.get("ema") or {"updates": 0})})

    def on_train_start(self, trainer: Any) -> None:
        self._attach(trainer)

    def on_step_end(self, trainer: Any, losses: Mapping[str, float]) -> None:
        if self.ema is not None and not trainer.step_skipped:
            self.ema.update(trainer.model)

    def on_checkpoint(self, trainer: Any, checkpoint: dict[str, Any]) -> None:
        if self._attach(trainer) is not None:  # `model` is already the average (trainer.eval_model)
            checkpoint["train_model"] = trainer.model.state_dict()
            checkpoint["ema"] = {"updates": self.ema.updates}
