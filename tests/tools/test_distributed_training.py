"""torchrun with 2 CPU processes (gloo): one run folder written by rank 0 only, and evaluation numbers equal to a
single-process evaluation of the saved checkpoint."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_train_and_test import FAST, run

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*TORCHRUN, "tools/train.py", *args], cwd=repo_root, capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture(scope="module")
def ddp_run(repo_root, shapes_root, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("ddp")
    # the default run-dir pattern has a timestamp per process: both ranks must still agree on one folder
    proc = torchrun(repo_root, *FAST, f"dataset.root={shapes_root}", "dataset.val_batch_size=2",
                    "experiment_name=ddp", f"hydra.run.dir={base}/" + "${experiment_name}/${now:%Y%m%d_%H%M%S_%f}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return base / "ddp", proc


def test_one_folder_written_by_rank_zero(ddp_run):
    exp_dir, proc = ddp_run
    folders = list(exp_dir.iterdir())
    assert len(folders) == 1, folders
    run_dir = folders[0]
    log = (run_dir / "train.log").read_text()
    # 24 images, a global batch of 4 = 2 per process: 6 steps per epoch, each over both shards
    assert "on cpu x 2 processes for 2 epochs x 6 iterations" in log
    assert "global batch of 4 (2 per process x 2 process(es) x 1 accumulated)" in log
    assert log.count("Epoch 1/2 iter 6/6") == 1 and log.count("Evaluation after epoch 1") == 1
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["mode"] == "val"] == [1, 2]
    assert [r["iter"] for r in records if r["mode"] == "train"][-1] == 12
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} <= {"last.pth", "best.pth"}
    assert len(list((run_dir / "tb").iterdir())) == 1  # one event file: rank 1 opened no writer


def test_distributed_evaluation_equals_single_process_evaluation(ddp_run, repo_root, tmp_path):
    exp_dir, _ = ddp_run
    run_dir = next(exp_dir.iterdir())
    val = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in val if r["mode"] == "val"][-1]
    # each rank evaluated half of the 8 images one at a time; the single process does all 8 one at a time
    run(repo_root, "tools/test.py", f"checkpoint={run_dir / 'checkpoints' / 'last.pth'}", "dataset.val_batch_size=1",
        f"hydra.run.dir={tmp_path / 'eval'}")
    single = json.loads((tmp_path / "eval" / "metrics.json").read_text())["bbox"]
    assert single["bbox/AR_100"] > 0
    for name, value in single.items():
        assert value == last[name], name


def test_global_batch_must_divide_over_the_processes(repo_root, shapes_root, tmp_path):
    proc = torchrun(repo_root, *FAST, f"dataset.root={shapes_root}", "dataset.batch_size=3",
                    f"hydra.run.dir={tmp_path / 'x'}")
    assert proc.returncode != 0
    assert "dataset.batch_size=3 is the global batch size and must divide evenly over the 2 processes" in proc.stderr
    shutil.rmtree(tmp_path / "x", ignore_errors=True)
