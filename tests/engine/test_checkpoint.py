import os

import pytest
import torch

from framework.engine import checkpoint as ckpt_mod
from framework.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_with_plain_containers(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "config": {"a": [1, 2], "b": None, "c": "x"}}
    path = save_checkpoint(state, tmp_path / "ckpt" / "last.pth")
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["config"] == state["config"]
    assert [p.name for p in path.parent.iterdir()] == ["last.pth"]  # no temp file left


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pth")

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="previous file, if any, is intact"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pth"]


def test_missing_and_unsafe_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="Checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pth")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(CheckpointError, match="refused for safety"):
        load_checkpoint(bad)
