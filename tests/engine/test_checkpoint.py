import errno
import os

import pytest
import torch

from framework import fileio
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
    with pytest.raises(CheckpointError, match="the disk is full .* previous last.pth, if any, is intact"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pth"]


class _FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written, as on a full filesystem."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        if self.room < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)


def test_disk_filling_up_inside_torch_save_is_a_clear_error(tmp_path, monkeypatch):
    """The write fails deep inside torch.save's zip writer (not in our code): still a CheckpointError naming the
    full disk, the temp file is gone and the previous checkpoint loads."""
    path = save_checkpoint({"epoch": 1, "w": torch.zeros(10)}, tmp_path / "last.pth")
    real_fdopen = os.fdopen
    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode: _FullDisk(real_fdopen(fd, mode), room=4096))
    with pytest.raises(CheckpointError, match="disk is full"):
        save_checkpoint({"epoch": 2, "w": torch.zeros(100_000)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["last.pth"]
    assert load_checkpoint(path)["epoch"] == 1


def test_missing_and_unsafe_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="Checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pth")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(CheckpointError, match="Refused to load .* posix.system"):
        load_checkpoint(bad)
