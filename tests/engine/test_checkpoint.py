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


def test_check_checkpoint_describes_what_a_file_holds(tmp_path):
    """`purpose` checks the content: each refusal names the file, what it holds and what to do (no tools, no model)."""
    ours = {"model": {"w": torch.zeros(2)}, "config": {"model": {}}, "optimizer": None, "epoch": 0, "iter": 0}
    cases = {
        "converted": (ours, None),  # what tools/convert_*.py write (epoch 0, no optimizer) resumes as a fresh start
        "no_iter": ({k: v for k, v in ours.items() if k != "iter"}, "no `iter`"),
        "keypoint_rcnn": ({"backbone.body.conv1.weight": torch.zeros(1),
                           "roi_heads.keypoint_predictor.kps_score_lowres.weight": torch.zeros(1)},
                          "not one tools/convert_torchvision.py converts"),
        "yolo": ({"model.0.conv.weight": torch.zeros(1), "model.22.dfl.conv.weight": torch.zeros(1)},
                 "python tools/convert_ultralytics.py --weights"),
        "ours_bare": ({"backbone.stem.0.weight": torch.zeros(1), "head.cls_out.bias": torch.zeros(1)},
                      "this framework's own detector (Detector.state_dict()), saved without the config"),
        "wrapped": ({"state_dict": {"a.weight": torch.zeros(1)}, "meta": {}},
                    "a dict with keys state_dict, meta, weights (1 tensors) under 'state_dict', no model or config"),
        "list": ([1, 2, 3], "it holds a list of 3 items"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save(content, path)
        if expected is None:
            assert load_checkpoint(path, purpose="resume")["epoch"] == 0
            continue
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path, purpose="resume")
        message = str(info.value)
        assert message.startswith(f"Cannot resume from {path}: it holds ") and expected in message, message
        assert "\n" not in message
    assert load_checkpoint(tmp_path / "no_iter.pth", purpose="model")["epoch"] == 0  # evaluation needs no iter
    (tmp_path / "empty_file.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"it holds nothing \(an empty file, 0 bytes\)"):
        load_checkpoint(tmp_path / "empty_file.pth", purpose="model")
