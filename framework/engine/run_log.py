"""Where a run reports: the Python logger (console + train.log via Hydra's job logging), metrics.jsonl and
TensorBoard. Only these few functions know about the files, so the loop stays readable."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger("framework")


def log_to_files(message: str) -> None:
    """Write to the log files only: while a progress bar owns the terminal, per-iteration lines go here."""
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers + logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class MetricsWriter:
    """Appends one JSON object per line to `metrics.jsonl` and mirrors scalars to TensorBoard."""

    def __init__(self, work_dir: str | Path, tensorboard: bool = True) -> None:
        self.path = Path(work_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(work_dir) / "tb"))

    def write(self, record: dict[str, Any], step: int, prefix: str) -> None:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"mode": prefix, **clean}) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "iter"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """TensorBoard only: for per-iteration values (the lr) that would bloat metrics.jsonl."""
        if self.tb is not None:
            self.tb.add_scalar(tag, value, step)

    def image(self, tag: str, image: Any, step: int) -> None:
        """A CHW uint8 image to TensorBoard's Images tab."""
        if self.tb is not None:
            self.tb.add_image(tag, image, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        """A matplotlib figure to TensorBoard's Images tab (closed afterwards)."""
        if self.tb is not None:
            self.tb.add_figure(tag, figure, step, close=True)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
