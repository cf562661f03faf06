"""What a callback is: a plain object with any subset of the trainer's events, as in Lightning (the names) and
detectron2's hooks (the smallness). The built-in behaviours and a user's own are the same kind of object.

Events, each called with the trainer first:
- `on_train_start(trainer)`, `on_train_end(trainer)`, `on_epoch_start(trainer)`, `on_epoch_end(trainer)`;
- `on_step_end(trainer, losses)`: after each optimizer step; `losses` maps each loss term to a float (read from the
  device on first access, so a callback that does not look costs nothing);
- `on_eval_end(trainer, metrics)`: the evaluation's metrics, the dict that metrics.json gets;
- `on_checkpoint(trainer, checkpoint)`: add your own keys to the dict about to be saved; `on_resume(trainer,
  checkpoint)` gets the same dict back when a run is resumed;
- `on_log(trainer, mode, record)`: a record for metrics.jsonl/TensorBoard (`mode` is train, val or pipeline);
- `on_nonfinite_loss(trainer, losses, image_ids)`: a NaN/inf loss; the step makes no update; raise to stop.

Callbacks run in ascending `order` (then in config order), so that EMA weights exist before evaluation, and
best.pth is written after the metrics that choose it.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

EVENTS = ("on_train_start", "on_epoch_start", "on_step_end", "on_nonfinite_loss", "on_epoch_end", "on_eval_end",
          "on_log", "on_checkpoint", "on_resume", "on_train_end")


class Callback:
    """Optional base class: subclassing gives no-op defaults and the `order` attribute, nothing else.

    The built-in callbacks take their settings without defaults where the config has one (trainer.* in
    framework/config/schema.py), so that each default is written once."""

    order: int = 50

    def on_train_start(self, trainer: Any) -> None: ...

    def on_epoch_start(self, trainer: Any) -> None: ...

    def on_step_end(self, trainer: Any, losses: Mapping[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Any) -> None: ...

    def on_eval_end(self, trainer: Any, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, trainer: Any, checkpoint: dict[str, Any]) -> None: ...

    def on_resume(self, trainer: Any, checkpoint: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Any) -> None: ...


def ordered(callbacks: Mapping[str, Any] | Iterable[Any]) -> list[tuple[str, Any]]:
    """(name, callback) pairs in running order: ascending `order`, then as given. A list names each by its class."""
    items = callbacks.items() if isinstance(callbacks, Mapping) else ((type(c).__name__, c) for c in callbacks)
    return sorted(((str(n), c) for n, c in items if c is not None), key=lambda nc: getattr(nc[1], "order", 50))


class StopTraining(Exception):
    """Raised by a callback that must stop the run at once without writing last.pth (e.g. a non-finite loss, after
    which the model's BatchNorm statistics may be poisoned): the last checkpoint on disk stays as it was."""


class CallbackError(RuntimeError):
    """A callback raised: the message names it and the event; last.pth was saved before this was raised."""


class LazyFloats(Mapping[str, float]):
    """Loss tensors seen as floats, each copied from the device only when read: a GPU step is not made to wait for
    a host read that no callback wants."""

    def __init__(self, tensors: Mapping[str, Any]) -> None:
        self._tensors, self._floats = dict(tensors), {}

    def __getitem__(self, key: str) -> float:
        if key not in self._floats:
            self._floats[key] = float(self._tensors[key])
        return self._floats[key]

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def tensors(self) -> dict[str, Any]:
        return self._tensors
