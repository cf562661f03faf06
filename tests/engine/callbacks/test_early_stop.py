"""The early-stop callback: patience (epochs without a better metric) and the wall-clock budget (max_time), which
also refits the number of epochs and the schedule."""
from __future__ import annotations

import pytest

from framework.config.validation import ConfigError
from framework.engine.checkpoint import load_checkpoint
from tests.engine.test_trainer import make_trainer, records


def test_early_stopping_saves_last_and_says_so(shapes_root, tmp_path, caplog):
    # shapes has no large objects: bbox/mAP_l is -1 at every evaluation, a new best only at epoch 1, so
    # patience=1 stops after epoch 2 of 4
    trainer = make_trainer(shapes_root, tmp_path, "trainer.max_epochs=4", "trainer.patience=1",
                         "trainer.best_metric=bbox/mAP_l")
    with caplog.at_level("INFO", logger="framework"):
        trainer.fit()
    assert trainer.epoch == 2 and "trainer.patience=1" in trainer.stop_reason
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pth")["epoch"] == 2
    assert "resume=true" in caplog.text


def test_max_time_fits_the_epochs_and_the_schedule_to_the_budget(shapes_root, tmp_path, caplog, monkeypatch):
    """trainer.max_time: after each epoch the number of epochs that fit is re-estimated (here forced to 2 of the
    configured 5) and the schedule and the run follow it: milestone fractions land on the new length and the run
    ends, evaluated, at epoch 2."""
    import framework.engine.callbacks.early_stop as early_stop_module

    estimates = []
    monkeypatch.setattr(early_stop_module, "epochs_within_budget",
                        lambda budget, elapsed, done: estimates.append((budget, done)) or 2)
    trainer = make_trainer(shapes_root, tmp_path, "trainer.max_epochs=5", "trainer.max_time=1.0",
                         "scheduler.milestones=[0.5]", "trainer.eval_interval=5")
    with caplog.at_level("INFO", logger="framework"):
        result = trainer.fit()
    assert estimates == [(3600.0, 1)]  # once: after epoch 1 the run already has its length
    assert trainer.epoch == 2 and trainer.max_epochs == 2 and trainer.scheduler.milestones == [1]
    assert result["last"] and "so 2 epochs fit (was 5)" in caplog.text
    assert [r["epoch"] for r in records(tmp_path, "val")] == [2]  # the last epoch is evaluated


def test_max_time_refuses_a_schedule_it_cannot_fit(shapes_root, tmp_path):
    with pytest.raises(ConfigError, match="cannot be epochs; give them as fractions"):
        make_trainer(shapes_root, tmp_path, "trainer.max_epochs=5", "trainer.max_time=1.0", "scheduler.milestones=[3]")
