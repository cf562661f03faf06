"""The checkpoint callback: last.pth every epoch, best.pth on a better metric, epoch_N.pth keeping the newest K."""
from __future__ import annotations

import pytest

from framework.config.validation import ConfigError
from framework.engine.callbacks import Checkpoint
from framework.engine.checkpoint import load_checkpoint


def test_last_best_and_keep_k(engine_run):
    folder = engine_run.work_dir / "checkpoints"
    assert {p.name for p in folder.iterdir()} == {"last.pth", "best.pth", "epoch_2.pth"}  # keep_checkpoints=1
    last, best = load_checkpoint(folder / "last.pth"), load_checkpoint(folder / "best.pth")
    assert last["epoch"] == 2 and last["best"] == engine_run.result["best"]
    assert best["epoch"] == best["best"]["epoch"] == engine_run.result["best"]["epoch"]
    assert any(line.startswith("Done. Best bbox/mAP = ") for line in engine_run.log)


def test_an_unknown_metric_is_named(tmp_path):
    trainer = type("T", (), {"epoch": 1, "results": {}})()
    with pytest.raises(ConfigError, match="trainer.best_metric=bbox_AP is not among the metrics: bbox/mAP"):
        Checkpoint("bbox_AP", interval=0, keep=None).on_eval_end(trainer, {"bbox/mAP": 0.5})
