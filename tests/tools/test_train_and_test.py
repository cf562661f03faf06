"""The command-line round trip: tools/train.py writes a run folder, tools/test.py re-evaluates its best.pth and
gets the same COCO numbers as the evaluation during training."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FAST = ["experiment=shapes_demo", "trainer.max_epochs=2", "dataset.batch_size=4", "dataset.val_batch_size=4",
        "dataset.num_workers=0", "dataset.min_size=64", "dataset.max_size=96", "scheduler.warmup_iters=5",
        "model.head.score_thr=0.01", "trainer.eval_interval=1"]


def run(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, *args], cwd=repo_root, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained_run(repo_root, shapes_root, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("work") / "run"
    run(repo_root, "tools/train.py", *FAST, f"dataset.root={shapes_root}", f"hydra.run.dir={run_dir}")
    return run_dir


def test_run_folder_contents(trained_run):
    assert {"config.yaml", "metrics.jsonl", "train.log", "tb", "checkpoints"} <= {p.name for p in trained_run.iterdir()}
    assert {p.name for p in (trained_run / "checkpoints").iterdir()} == {"last.pth", "best.pth"}
    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert cfg["work_dir"] == str(trained_run) and cfg["model"]["backbone"]["depth"] == 18
    assert "${" not in (trained_run / "config.yaml").read_text()  # resolved
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["mode"] == "val"]
    assert [r["epoch"] for r in val] == [1, 2] and len(val[0]) == 12 + 3
    assert any(r["mode"] == "train" and r["lr"] > 0 for r in records)
    assert "Average Precision" in (trained_run / "train.log").read_text()


def test_test_tool_reproduces_training_evaluation(trained_run, repo_root):
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["mode"] == "val"]
    best = max(val, key=lambda r: r["bbox_mAP"])  # best.pth is the first epoch reaching the maximum
    best = next(r for r in val if r["bbox_mAP"] == best["bbox_mAP"])
    proc = run(repo_root, "tools/test.py", f"checkpoint={trained_run / 'checkpoints' / 'best.pth'}")
    assert "Average Precision" in proc.stdout + proc.stderr
    eval_dirs = sorted(trained_run.glob("eval_*"))
    assert len(eval_dirs) == 1
    metrics = json.loads((eval_dirs[0] / "metrics.json").read_text())["bbox"]
    for name, value in metrics.items():
        assert value == pytest.approx(best[name], abs=1e-12), name
    assert metrics["bbox_AR_100"] > 0  # the comparison is not between two empty evaluations
    results = json.loads((eval_dirs[0] / "results.bbox.json").read_text())
    assert results and set(results[0]) == {"image_id", "category_id", "bbox", "score"}


def test_test_tool_overrides_and_errors(trained_run, repo_root, tmp_path):
    ckpt = trained_run / "checkpoints" / "last.pth"
    run(repo_root, "tools/test.py", f"checkpoint={ckpt}", "dataset.val_batch_size=1", f"hydra.run.dir={tmp_path / 'e'}")
    assert (tmp_path / "e" / "metrics.json").is_file()
    proc = subprocess.run([sys.executable, "tools/test.py", f"checkpoint={tmp_path / 'missing.pth'}"], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Checkpoint not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "tools/test.py", f"checkpoint={ckpt}", "dataset=coco", "dataset.root=/nonexistent/coco"],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "/nonexistent/coco" in proc.stderr and "Traceback" not in proc.stderr
    assert "Expected layout" in proc.stderr and "instances_val2017.json" in proc.stderr
    assert not Path("/nonexistent").exists()


def test_cfg_job_prints_the_composed_config(repo_root):
    proc = run(repo_root, "tools/train.py", "--cfg", "job")
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["_target_"] == "framework.models.Detector" and cfg["dataset"]["name"] == "shapes"


def test_yolo_style_pipeline_trains_end_to_end_and_closes_mosaic(repo_root, shapes_root, tmp_path):
    run_dir = tmp_path / "yolo"
    run(repo_root, "tools/train.py", *FAST, "pipeline=yolo_style", "dataset.img_size=64", "pipeline.close_mosaic_epochs=1",
        "pipeline.mixup.prob=0.5", "dataset.num_workers=2", f"dataset.root={shapes_root}", f"hydra.run.dir={run_dir}")
    log = (run_dir / "train.log").read_text()
    assert "Epoch 1/2 pipeline: Mosaic.prob=1, MixUp.prob=0.5" in log
    assert "Epoch 2/2 pipeline: Mosaic.prob=0, MixUp.prob=0" in log
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["Mosaic.prob"] for r in records if r["mode"] == "pipeline"] == [1.0, 0.0]
    assert [r["epoch"] for r in records if r["mode"] == "val"] == [1, 2]
    assert (run_dir / "checkpoints" / "best.pth").is_file()
