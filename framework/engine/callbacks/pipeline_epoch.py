"""Tell the main-process augmentation pipeline which epoch starts (close-mosaic, GridMask's ramp), log what it
applies, and report the images the data policy skipped or repaired in the epoch. (The sampler, hence the workers'
copy of the pipeline, is told by the loop itself: the data order must not depend on a callback.)"""
from __future__ import annotations

import logging
from typing import Any

from framework.engine import distributed
from framework.engine.callbacks.base import Callback

logger = logging.getLogger("framework")


class PipelineEpoch(Callback):
    order = 20

    def on_epoch_start(self, trainer: Any) -> None:
        pipeline = getattr(getattr(trainer.train_loader, "dataset", None), "pipeline", None)
        if not hasattr(pipeline, "set_epoch"):
            return
        pipeline.set_epoch(trainer.epoch, trainer.max_epochs)
        summary = pipeline.epoch_summary()
        if summary:
            logger.info(f"Epoch {trainer.epoch + 1}/{trainer.max_epochs} pipeline: "
                        + ", ".join(f"{k}={v:.3g}" for k, v in summary.items()))
            trainer.log("pipeline", {"epoch": trainer.epoch + 1, **summary})

    def on_epoch_end(self, trainer: Any) -> None:
        from framework.data.bad_images import skipped_images_report

        report = skipped_images_report(trainer.epoch, trainer.train_loader, distributed.gather_objects)
        if report and trainer.dist.is_main:
            logger.info(report)
