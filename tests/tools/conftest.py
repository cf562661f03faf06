"""One short training run shared by the tool tests that only need some checkpoint (infer, export)."""
from __future__ import annotations

from pathlib import Path

import pytest

from .test_train_and_test import FAST, run


@pytest.fixture(scope="session")
def one_epoch_run(repo_root: Path, shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a 1-epoch RetinaNet (shapes_demo, 64–96 px) on the shapes fixture."""
    run_dir = tmp_path_factory.mktemp("one_epoch") / "run"
    run(repo_root, "tools/train.py", *FAST, "trainer.max_epochs=1", f"dataset.root={shapes_root}",
        f"hydra.run.dir={run_dir}")
    return run_dir
