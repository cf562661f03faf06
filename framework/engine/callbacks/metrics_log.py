"""metrics.jsonl (one JSON object per train/val/pipeline record) and, at the end, results.png drawn from it. On
resume, the new run's file starts with the old run's records up to the checkpoint, so its curves cover the whole
training; old metric names in them (`bbox_mAP`) get the new ones (`bbox/mAP`), so each curve stays one line."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from framework.engine.callbacks.base import Callback
from framework.evaluation.metric_names import LEGACY_NAMES, rename_legacy

logger = logging.getLogger("framework")


class MetricsLog(Callback):
    order = 70

    def __init__(self, plot: bool) -> None:
        self.plot = plot

    def on_log(self, trainer: Any, mode: str, record: dict[str, Any]) -> None:
        if not trainer.dist.is_main:
            return
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
        path = trainer.work_dir / "metrics.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps({"mode": mode, **clean}) + "\n")

    def on_resume(self, trainer: Any, checkpoint: dict[str, Any]) -> None:
        old = Path(trainer.resumed_from).parent.parent / "metrics.jsonl"
        new = trainer.work_dir / "metrics.jsonl"
        if not trainer.dist.is_main or not old.is_file() or old.resolve() == new.resolve():
            return
        last_epoch = trainer.epoch + (1 if trainer.batch_in_epoch else 0)  # train/pipeline records count from 1
        kept = []
        for line in old.read_text().splitlines():
            record = json.loads(line) if line.strip() else None
            if record is not None and record.get("iter", 0) <= trainer.iter and record.get("epoch", 0) <= last_epoch:
                kept.append(json.dumps(rename_legacy(record)) if LEGACY_NAMES.keys() & record.keys() else line)
        new.parent.mkdir(parents=True, exist_ok=True)
        new.write_text("".join(line + "\n" for line in kept))

    def on_train_end(self, trainer: Any) -> None:
        path = trainer.work_dir / "metrics.jsonl"
        if not self.plot or not trainer.dist.is_main or not path.is_file():
            return
        from framework.visualization import plot_results

        try:
            logger.info(f"Curves: {plot_results(path, trainer.work_dir / 'results.png')}")
        except ValueError as exc:  # nothing logged yet (e.g. a run stopped before its first log line)
            logger.warning(f"results.png not written: {exc}")
