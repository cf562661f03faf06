"""What to do about a NaN/inf loss: say where (iteration, loss terms, image ids), skip up to `skip` such steps
(the step makes no update), then stop with advice. The loop never applies a non-finite update either way."""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import torch

from framework.engine.callbacks.base import Callback, StopTraining

logger = logging.getLogger("framework")


class NonFiniteLossError(StopTraining, FloatingPointError):
    """Training met a NaN/inf loss more often than trainer.skip_nonfinite allows; the message says where."""


class NonFiniteLoss(Callback):
    order = 0

    def __init__(self, skip: int) -> None:
        self.skip, self.skipped, self.in_epoch = skip, 0, 0

    def on_nonfinite_loss(self, trainer: Any, losses: Mapping[str, float], image_ids: list[Any]) -> None:
        where = f"epoch {trainer.epoch + 1}, iteration {trainer.iter + 1}"
        culprits = [k for k, v in losses.items() if not math.isfinite(v)]
        if culprits:
            terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
            detail = f"Non-finite loss at {where}: {', '.join(culprits)} ({terms}); images in the batch: {image_ids}"
        else:
            detail = f"Non-finite loss on another process at {where}"
        self.skipped += 1
        if self.skipped <= self.skip:
            self.in_epoch += 1
            logger.warning(f"{detail}. Step skipped ({self.skipped} of trainer.skip_nonfinite={self.skip}).")
            return
        hint = " or use trainer.precision=bf16/fp32 (fp16 overflows)" if trainer.amp_dtype == torch.float16 else ""
        kept = trainer.work_dir / "checkpoints" / "last.pth"
        kept_text = f"{kept} is kept as it was" if kept.is_file() else "no checkpoint had been written yet"
        used = f"; the {self.skip} skips allowed by trainer.skip_nonfinite are used up" if self.skip else ""
        raise NonFiniteLossError(f"{detail}{used}. Training stopped; {kept_text}. Lower optimizer.lr or set "
                                 f"trainer.grad_clip_norm{hint}, check those images' annotations, or allow skipping "
                                 "such steps with trainer.skip_nonfinite=N.")

    def on_epoch_end(self, trainer: Any) -> None:
        if self.in_epoch:
            logger.warning(f"Epoch {trainer.epoch}: {self.in_epoch} step(s) skipped for a non-finite loss "
                           f"({self.skipped} of trainer.skip_nonfinite={self.skip} used).")
        self.in_epoch = 0
