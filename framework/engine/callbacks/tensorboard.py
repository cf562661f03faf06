"""TensorBoard: every logged record as scalars (train by iteration, val and pipeline by epoch), the lr at every
step, and the pictures other callbacks hand it (`image`, `figure`). The writer opens on first use, on rank 0."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

from framework.engine.callbacks.base import Callback


class TensorBoard(Callback):
    order = 70

    def __init__(self) -> None:
        self.writer: Any = None
        self.work_dir: Path | None = None

    def _writer(self, trainer: Any) -> Any:
        if self.writer is None and trainer.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(trainer.work_dir / "tb"))
        return self.writer

    def on_log(self, trainer: Any, mode: str, record: dict[str, Any]) -> None:
        writer = self._writer(trainer)
        if writer is None:
            return
        step = record.get("iter", 0) if mode == "train" else record.get("epoch", 0)
        for k, v in record.items():
            if isinstance(v, (int, float)) and k not in ("epoch", "iter"):
                writer.add_scalar(f"{mode}/{k}", v, step)

    def on_step_end(self, trainer: Any, losses: Mapping[str, float]) -> None:
        writer = self._writer(trainer)
        if writer is not None:
            writer.add_scalar("train/lr_iter", trainer.optimizer.param_groups[0]["lr"], trainer.iter)

    def image(self, trainer: Any, tag: str, image: Any) -> None:
        """A CHW uint8 image to the Images tab at the current epoch."""
        writer = self._writer(trainer)
        if writer is not None:
            writer.add_image(tag, image, trainer.epoch)

    def figure(self, trainer: Any, tag: str, figure: Any) -> None:
        """A matplotlib figure to the Images tab (closed afterwards)."""
        writer = self._writer(trainer)
        if writer is not None:
            writer.add_figure(tag, figure, trainer.epoch, close=True)

    def on_resume(self, trainer: Any, checkpoint: dict[str, Any]) -> None:
        old = Path(trainer.resumed_from).parent.parent / "tb"
        if trainer.dist.is_main and old.is_dir() and not (trainer.work_dir / "tb").exists():
            shutil.copytree(old, trainer.work_dir / "tb")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
