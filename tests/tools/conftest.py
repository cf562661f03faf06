"""One short training run shared by every tool test that needs a trained run or some checkpoint (test, infer,
export, untrusted files): trained once per session, through tools/train.py as a user runs it."""
from __future__ import annotations

from pathlib import Path

import pytest

from .test_train_and_test import FAST, run


@pytest.fixture(scope="session")
def trained_run(repo_root: Path, shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a 2-epoch RetinaNet (shapes_demo, 64–96 px) on the shapes fixture."""
    run_dir = tmp_path_factory.mktemp("work") / "run"
    run(repo_root, "tools/train.py", *FAST, f"dataset.root={shapes_root}", f"hydra.run.dir={run_dir}")
    return run_dir
