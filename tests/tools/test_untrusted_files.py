"""Checkpoints and configs from strangers cannot run code, driven as a user would: tools/test.py on a checkpoint
with a pickled payload, on a checkpoint whose saved config names os.system (and tries to allow it itself), and
tools/train.py given such a `_target_` on the command line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from framework.config.validation import ConfigError
from framework.engine.checkpoint import load_checkpoint
from framework.inference import Predictor


def tool(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=repo_root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_payload_is_refused_without_running(repo_root, shapes_root, trained_run, tmp_path):
    marker = tmp_path / "pwned"
    real = load_checkpoint(trained_run / "checkpoints" / "last.pth")
    evil = tmp_path / "evil.pth"
    torch.save({**real, "meta": Payload(marker)}, evil)  # a real checkpoint with one extra object
    proc = tool(repo_root, "tools/test.py", f"checkpoint={evil}", f"dataset.root={shapes_root}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"Error: Refused to load checkpoint {evil}: it refers to posix.system" in proc.stderr
    assert "Traceback" not in proc.stderr and not marker.exists()


def test_saved_config_cannot_name_or_allow_foreign_targets(repo_root, shapes_root, trained_run, tmp_path):
    state = load_checkpoint(trained_run / "checkpoints" / "last.pth")
    state["config"]["model"]["backbone"] = {"_target_": "os.system", "command": f"touch {tmp_path / 'pwned'}"}
    state["config"]["allow_targets"] = ["os"]  # a checkpoint may not extend the allow-list for its user
    crafted = tmp_path / "crafted.pth"
    torch.save(state, crafted)
    proc = tool(repo_root, "tools/test.py", f"checkpoint={crafted}", f"dataset.root={shapes_root}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Error: 'model.backbone._target_' names 'os.system', which is outside the modules" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "pwned").exists()
    with pytest.raises(ConfigError, match="os.system"):  # the Python API refuses it as well
        Predictor.from_checkpoint(crafted)


def test_foreign_target_on_the_command_line_is_refused(repo_root, shapes_root, tmp_path):
    run_dir = tmp_path / "run"
    proc = tool(repo_root, "tools/train.py", "model.backbone._target_=subprocess.run", f"dataset.root={shapes_root}",
                f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert "Error: 'model.backbone._target_' names 'subprocess.run', which is outside the modules" in proc.stderr
    assert "allow_targets=[subprocess.]" in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dir.exists()
