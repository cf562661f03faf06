"""The progress bar and the log line every `trainer.log_interval` steps: losses, lr, gradient norm, memory,
images/s, data-wait share, ETA (ultralytics' line). The same figures go to metrics.jsonl/TensorBoard as a `train`
record. Losses are summed on the device and read once per line, so the hot path holds no host sync for logging."""
from __future__ import annotations

import logging
import math
import resource
import sys
import time
from typing import Any, Mapping

import torch
from tqdm import tqdm

from framework.engine import distributed
from framework.engine.callbacks.base import Callback

logger = logging.getLogger("framework")
# a short bar so that the losses, lr, images/s and the run's ETA fit on one terminal line
_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar:12}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def memory_gib(device: torch.device) -> float:
    """Peak memory of this process: allocated GPU memory on CUDA, else the resident set size (RSS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kib / (2**30 if sys.platform == "darwin" else 2**20)


def format_eta(seconds: float) -> str:
    return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"  # may exceed 24 h


class Window:
    """Accumulates one log interval: loss sums, images, optimizer steps, data-wait time."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.loss_sums: dict[str, torch.Tensor] = {}
        self.batches = self.images = self.steps = 0
        self.data_time = 0.0

    def add_batch(self, losses: dict[str, torch.Tensor], images: int, data_time: float) -> None:
        for k, v in losses.items():
            self.loss_sums[k] = self.loss_sums.get(k, 0.0) + v.detach().float()
        self.batches, self.images, self.data_time = self.batches + 1, self.images + images, self.data_time + data_time

    def mean_losses(self) -> dict[str, torch.Tensor]:
        return {k: v / max(self.batches, 1) for k, v in self.loss_sums.items()}

    def timing(self, world_size: int = 1) -> dict[str, float]:
        """images/s over all ranks, and the share of the window spent waiting for data."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {"images_per_s": self.images * world_size / elapsed, "data_time": self.data_time / max(self.steps, 1),
                "step_time": elapsed / max(self.steps, 1), "data_share": self.data_time / elapsed}


def stats_text(stats: dict[str, Any]) -> str:
    """The middle of a progress line: losses, lr, gradient norm, memory, throughput, data-wait share."""
    losses = " ".join(f"{k}={v:.4f}" for k, v in stats.items() if k.startswith("loss"))
    grad = f" grad={stats['grad_norm']:.3g}" if stats.get("grad_norm") is not None else ""
    return (f"{losses} lr={stats['lr']:.3g}{grad} mem={stats['memory_gib']:.2f}G {stats['images_per_s']:.1f} img/s "
            f"data {100 * stats['data_share']:.0f}%")


def log_to_files(message: str) -> None:
    """Write to the log files only: while a progress bar owns the terminal, per-iteration lines go here."""
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers + logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


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
