"""One small training run shared by the trainer and callback tests (tests/engine/callbacks/): bf16 autocast, EMA,
gradient accumulation, keep-K checkpoints, validation images and plots, all in 2 epochs of 6 batches."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from .test_trainer import make_trainer


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="session")
def engine_run(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    work_dir = tmp_path_factory.mktemp("engine_run")
    trainer = make_trainer(shapes_root, work_dir, "trainer.max_epochs=2", "trainer.precision=bf16",
                           "trainer.ema.enabled=true", "trainer.ema.tau=2", "trainer.accumulate=2",
                           "trainer.checkpoint_interval=1", "trainer.keep_checkpoints=1", "trainer.vis_images=2",
                           "evaluation.plots=true", "trainer.log_interval=2")
    dtypes: set = set()
    trainer.model.head.register_forward_hook(lambda m, i, o: dtypes.add(o[0][0].dtype) if m.training else None)
    handler, log = _Lines(), logging.getLogger("framework")
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        result = trainer.fit()
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    return SimpleNamespace(trainer=trainer, work_dir=work_dir, dtypes=dtypes, result=result, log=handler.lines)
