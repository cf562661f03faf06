"""The progress bar and the log line every `trainer.log_interval` steps: losses, lr, gradient norm, memory,
images/s, data-wait share, ETA (ultralytics' line). The same figures go to metrics.jsonl/TensorBoard as a `train`
record. Losses are summed on the device and read once per line, so the hot path holds no host sync for logging."""
from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any, Mapping

from tqdm import tqdm

from framework.engine import distributed
from framework.engine.callbacks.base import Callback
from framework.engine.progress import Window, format_eta, memory_gib, stats_text
from framework.engine.run_log import log_to_files

logger = logging.getLogger("framework")
# a short bar so that the losses, lr, images/s and the run's ETA fit on one terminal line
_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar:12}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


class Progress(Callback):
    order = 30

    def __init__(self, bar: bool) -> None:
        self.show_bar, self.bar, self.window = bar, None, Window()
        self.run_start, self.start_iter = time.perf_counter(), 0

    def on_train_start(self, trainer: Any) -> None:
        self.run_start, self.start_iter = time.perf_counter(), trainer.iter
        describe = getattr(trainer.scheduler, "describe", None)
        if describe is not None:
            logger.info(f"Schedule: {describe()}" + "".join(f"; {n}" for n in getattr(trainer.scheduler, "notes", [])))

    def on_epoch_start(self, trainer: Any) -> None:
        self.close()
        self.bar = tqdm(total=trainer.steps_per_epoch, initial=trainer.batch_in_epoch // trainer.accumulate,
                        desc=f"Epoch {trainer.epoch + 1}/{trainer.max_epochs}", dynamic_ncols=True, leave=True,
                        disable=None if self.show_bar and trainer.dist.is_main else True, file=sys.stderr,
                        bar_format=_BAR_FORMAT)
        self.window.reset()

    def on_step_end(self, trainer: Any, losses: Mapping[str, float]) -> None:
        if not trainer.step_skipped:
            self.window.add_batch(losses.tensors(), trainer.step_images, trainer.step_data_time)
        self.window.steps += 1
        if self.bar is not None:
            self.bar.update(1)
        if trainer.iter % trainer.log_interval == 0 or trainer.batch_in_epoch == trainer.batches_per_epoch:
            self._log(trainer)

    def _log(self, trainer: Any) -> None:
        stats: dict[str, Any] = {k: float(v) for k, v in distributed.all_reduce_mean(self.window.mean_losses()).items()}
        stats["loss"] = sum(stats.values())
        stats.update(lr=trainer.optimizer.param_groups[0]["lr"], grad_norm=trainer.grad_norm,
                     memory_gib=memory_gib(trainer.device), **self.window.timing(trainer.dist.world_size))
        if trainer.scaler.is_enabled():
            stats["loss_scale"] = trainer.scaler.get_scale()
        steps = trainer.steps_per_epoch
        done = trainer.iter - self.start_iter
        eta = (time.perf_counter() - self.run_start) / max(done, 1) * (trainer.max_epochs * steps - trainer.iter)
        it = math.ceil(trainer.batch_in_epoch / trainer.accumulate)
        line = (f"Epoch {trainer.epoch + 1}/{trainer.max_epochs} iter {it}/{steps} {stats_text(stats)} "
                f"eta {format_eta(eta)}")
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix_str(f"{stats_text(stats)} run eta {format_eta(eta)}", refresh=False)
            log_to_files(line)
        elif trainer.dist.is_main:
            logger.info(line)
        trainer.log("train", {**{k: v for k, v in stats.items() if v is not None}, "epoch": trainer.epoch + 1,
                              "iter": trainer.iter})
        self.window.reset()

    def on_epoch_end(self, trainer: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
