"""Resume, driven as a user would: a run stopped and resumed ends bitwise where the uninterrupted run ends."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from framework.engine.checkpoint import load_checkpoint

from .test_train_and_test import FAST, run

# deterministic CPU settings; EMA on so its state is covered too
EXACT = [*FAST, "deterministic=true", "trainer.ema.enabled=true", "trainer.ema.tau=3", "trainer.log_interval=2",
         "trainer.vis_images=2"]


def assert_same_state(a: dict, b: dict, where: str = "") -> None:
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def records(run_dir: Path, mode: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["mode"] == mode]


def test_stopped_and_resumed_run_equals_the_straight_run(repo_root, shapes_root, tmp_path):
    # 2 persistent workers: their augmentations must not depend on where the run was stopped (per-sample seeds);
    # with 0 workers the main process's generators are restored around each sample (test_pipeline_dataset.py)
    common = [*EXACT, f"dataset.root={shapes_root}", "dataset.num_workers=2"]
    straight, first, resumed = tmp_path / "straight", tmp_path / "first", tmp_path / "resumed"
    run(repo_root, "tools/train.py", *common, f"hydra.run.dir={straight}")
    # a wall-clock budget of ~0 stops the run after its first optimizer step, mid-epoch 1
    proc = run(repo_root, "tools/train.py", *common, "trainer.max_time=1e-9", f"hydra.run.dir={first}")
    assert "trainer.max_time=1e-09 h reached at epoch 1, iteration 1" in proc.stderr + proc.stdout
    stopped = load_checkpoint(first / "checkpoints" / "last.pth")
    assert (stopped["epoch"], stopped["iter"], stopped["batch_in_epoch"]) == (0, 1, 1)
    proc = run(repo_root, "tools/train.py", *common, f"resume={first / 'checkpoints' / 'last.pth'}",
               f"hydra.run.dir={resumed}")
    out = proc.stdout + proc.stderr
    assert "Resumed from" in out and "epoch 0 + 1 batches (iteration 1)" in out

    a = load_checkpoint(straight / "checkpoints" / "last.pth")
    b = load_checkpoint(resumed / "checkpoints" / "last.pth")
    for key in ("model", "train_model", "ema", "optimizer", "scheduler", "epoch", "iter", "batch_in_epoch", "best"):
        assert_same_state(a[key], b[key], key)
    assert a["epoch"] == 2 and a["iter"] == 12
    # the resumed run's log starts with the stopped run's records and has the same validation numbers
    assert [r["iter"] for r in records(resumed, "train")] == [r["iter"] for r in records(straight, "train")]
    assert records(resumed, "val") == records(straight, "val")
    assert (resumed / "results.png").is_file()


def test_resume_true_finds_the_newest_run_and_extends_a_finished_one(repo_root, shapes_root, tmp_path):
    work = tmp_path / "work_dirs"
    common = [*FAST, f"dataset.root={shapes_root}", "trainer.max_epochs=1", "experiment_name=resumable"]
    run(repo_root, "tools/train.py", *common, f"hydra.run.dir={work}/resumable/a")
    proc = run(repo_root, "tools/train.py", *common, "resume=true", f"hydra.run.dir={work}/resumable/b")
    out = proc.stdout + proc.stderr
    assert "already trained 1 epochs" in out and "trainer.max_epochs=2" in out
    assert not (work / "resumable" / "b" / "checkpoints").exists()
    proc = run(repo_root, "tools/train.py", *common[:-2], "trainer.max_epochs=2", "experiment_name=resumable",
               "resume=true", f"hydra.run.dir={work}/resumable/c")
    out = proc.stdout + proc.stderr
    assert f"Resumed from {work}/resumable/a/checkpoints/last.pth at epoch 1" in out
    assert "Extending the finished 1-epoch run to 2 epochs" in out
    ckpt = load_checkpoint(work / "resumable" / "c" / "checkpoints" / "last.pth")
    assert ckpt["epoch"] == 2 and ckpt["iter"] == 12
    assert [r["epoch"] for r in records(work / "resumable" / "c", "val")] == [1, 2]


def test_resume_errors_are_clear(repo_root, shapes_root, tmp_path):
    import subprocess
    import sys

    base = [sys.executable, "tools/train.py", *FAST, f"dataset.root={shapes_root}", "experiment_name=never_ran"]
    proc = subprocess.run([*base, "resume=true", f"hydra.run.dir={tmp_path}/work_dirs/never_ran/x"], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no run of this experiment has checkpoints/last.pth" in proc.stderr
    proc = subprocess.run([*base, f"resume={tmp_path}/nope.pth", f"hydra.run.dir={tmp_path}/y"], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and f"no checkpoint at {tmp_path}/nope.pth" in proc.stderr
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"conv.weight": torch.zeros(1)}, "epoch": 0, "iter": 3, "config": {}}, foreign)
    proc = subprocess.run([*base, f"resume={foreign}", f"hydra.run.dir={tmp_path}/z"], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and f"{foreign} does not fit this model" in proc.stderr
    assert "Traceback" not in proc.stderr
