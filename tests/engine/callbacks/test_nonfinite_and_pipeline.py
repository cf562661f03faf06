"""The non-finite-loss policy (skip up to N steps, then stop with advice, last.pth untouched) and the pipeline
epoch callback (the main-process pipeline told the epoch, its summary logged), on a stand-in trainer: no training
needed to pin them down. tests/tools/test_nonfinite_loss.py runs the policy through tools/train.py."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from framework.engine.callbacks import NonFiniteLoss, NonFiniteLossError, PipelineEpoch, StopTraining


def stand_in(tmp_path: Path, **extra) -> SimpleNamespace:
    logged: list = []
    return SimpleNamespace(epoch=0, iter=4, max_epochs=3, work_dir=tmp_path, amp_dtype=torch.float16,
                           log=lambda mode, record: logged.append((mode, record)), logged=logged, **extra)


def test_skips_then_stops_naming_the_loss_terms_and_images(tmp_path, caplog):
    trainer, policy = stand_in(tmp_path), NonFiniteLoss(skip=1)
    losses = {"loss_cls": float("nan"), "loss_box": 0.5}
    with caplog.at_level(logging.WARNING, logger="framework"):
        policy.on_nonfinite_loss(trainer, losses, [7, 9])
        policy.on_epoch_end(trainer)
    assert "loss_cls (loss_cls=nan, loss_box=0.5); images in the batch: [7, 9]. Step skipped (1 of" in caplog.text
    assert "1 step(s) skipped for a non-finite loss" in caplog.text
    with pytest.raises(NonFiniteLossError) as info:
        policy.on_nonfinite_loss(trainer, losses, [3])
    message = str(info.value)
    assert "the 1 skips allowed by trainer.skip_nonfinite are used up" in message
    assert "no checkpoint had been written yet" in message and "trainer.precision=bf16/fp32" in message
    assert isinstance(info.value, StopTraining)  # the trainer does not overwrite last.pth for it


def test_another_process_non_finite_loss(tmp_path):
    with pytest.raises(NonFiniteLossError, match="Non-finite loss on another process at epoch 1, iteration 5"):
        NonFiniteLoss(skip=0).on_nonfinite_loss(stand_in(tmp_path), {"loss_cls": 0.3}, [1])


class _Pipeline:
    def __init__(self) -> None:
        self.calls: list = []

    def set_epoch(self, epoch: int, max_epochs: int) -> None:
        self.calls.append((epoch, max_epochs))

    def epoch_summary(self) -> dict:
        return {"mosaic_prob": 0.0 if self.calls[-1][0] >= 2 else 1.0}


def test_pipeline_epoch_tells_the_pipeline_and_logs_its_summary(tmp_path, caplog):
    pipeline = _Pipeline()
    trainer = stand_in(tmp_path, train_loader=SimpleNamespace(dataset=SimpleNamespace(pipeline=pipeline)))
    trainer.epoch = 2
    with caplog.at_level(logging.INFO, logger="framework"):
        PipelineEpoch().on_epoch_start(trainer)
    assert pipeline.calls == [(2, 3)] and "Epoch 3/3 pipeline: mosaic_prob=0" in caplog.text
    assert trainer.logged == [("pipeline", {"epoch": 3, "mosaic_prob": 0.0})]
