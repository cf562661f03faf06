"""The command-line round trip: tools/train.py writes a run folder, tools/test.py re-evaluates its best.pth and
gets the same COCO numbers as the evaluation during training."""
from __future__ import annotations

import json
import os
import runpy
import shutil
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
    best = max(val, key=lambda r: r["bbox/mAP"])  # best.pth is the first epoch reaching the maximum
    best = next(r for r in val if r["bbox/mAP"] == best["bbox/mAP"])
    proc = run(repo_root, "tools/test.py", f"checkpoint={trained_run / 'checkpoints' / 'best.pth'}")
    assert "Average Precision" in proc.stdout + proc.stderr
    eval_dirs = sorted(trained_run.glob("eval_*"))
    assert len(eval_dirs) == 1
    metrics = json.loads((eval_dirs[0] / "metrics.json").read_text())["bbox"]
    for name, value in metrics.items():
        assert value == pytest.approx(best[name], abs=1e-12), name
    assert metrics["bbox/AR_100"] > 0  # the comparison is not between two empty evaluations
    results = json.loads((eval_dirs[0] / "results.bbox.json").read_text())
    assert results and set(results[0]) == {"image_id", "category_id", "bbox", "score"}
    assert {"pr_curve.png", "confusion_matrix.png", "f1_curve.png"} <= {p.name for p in eval_dirs[0].iterdir()}
    assert (trained_run / "pr_curve.png").is_file()  # written by the evaluations during training

    # the same detections, scored from the results file alone, give the same 12 numbers
    out_dir = eval_dirs[0] / "from_results"
    run(repo_root, "tools/eval_results.py", f"results={eval_dirs[0] / 'results.bbox.json'}",
        f"dataset.root={dataset_root_of(trained_run)}",
        f"hydra.run.dir={out_dir}")
    rescored = json.loads((out_dir / "metrics.json").read_text())["bbox"]
    assert rescored == metrics


def dataset_root_of(run_dir: Path) -> str:
    return yaml.safe_load((run_dir / "config.yaml").read_text())["dataset"]["root"]


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


@pytest.mark.parametrize("dataset,expected", [("voc07", ["VOC2007", "Annotations", "dataset.root=/path/to/VOCdevkit"]),
                                              ("cityscapes", ["leftImg8bit", "gtFine", "dataset.root=/path/to/cityscapes"]),
                                              ("coco", ["instances_val2017.json", "dataset.root=/path/to/coco"])])
def test_mistyped_dataset_root_shows_the_tree_and_the_key(repo_root, tmp_path, dataset, expected):
    proc = subprocess.run([sys.executable, "tools/train.py", f"dataset={dataset}", f"dataset.root={tmp_path / 'typo'}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=repo_root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert str(tmp_path / "typo") in proc.stderr
    for text in expected:
        assert text in proc.stderr, (text, proc.stderr)


@pytest.mark.parametrize("dataset,root_fixture,metric", [("voc07", "shapes_voc_root", "voc_mAP"),
                                                         ("cityscapes", "shapes_cityscapes_root", "bbox/mAP")])
def test_train_and_test_on_voc_and_cityscapes_layouts(repo_root, tmp_path, request, dataset, root_fixture, metric):
    root = request.getfixturevalue(root_fixture)
    run_dir = tmp_path / dataset
    extra = ["dataset.num_classes=4"] if dataset.startswith("voc") else []
    run(repo_root, "tools/train.py", *FAST, "trainer.max_epochs=1", f"dataset={dataset}", f"dataset.root={root}",
        *extra, f"hydra.run.dir={run_dir}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["mode"] == "val"]
    assert len(val) == 1 and metric in val[0]
    run(repo_root, "tools/test.py", f"checkpoint={run_dir / 'checkpoints' / 'last.pth'}", f"hydra.run.dir={tmp_path / 'e'}")
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())["bbox"]
    assert metrics[metric] == pytest.approx(val[0][metric], abs=1e-12)
    assert (tmp_path / "e" / "confusion_matrix.png").is_file()


def test_plot_run_redraws_a_runs_figures(trained_run, repo_root, tmp_path):
    figures = ["results.png", "pr_curve.png", "f1_curve.png", "confusion_matrix.png"]
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    for name in figures:
        (copy / name).unlink(missing_ok=True)
    run(repo_root, "tools/plot_run.py", str(copy), "plots=false")  # a bare folder argument; curves only
    assert (copy / "results.png").stat().st_size > 10_000 and not (copy / "pr_curve.png").exists()
    (copy / "results.png").unlink()
    proc = run(repo_root, "tools/plot_run.py", f"run_dir={copy}")
    assert all((copy / name).is_file() for name in figures), sorted(p.name for p in copy.iterdir())
    assert "Average Precision" in proc.stdout + proc.stderr  # best.pth was evaluated for the PR/F1/confusion plots
    bad = subprocess.run([sys.executable, "tools/plot_run.py", str(tmp_path / "nope")], cwd=repo_root,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "metrics.jsonl does not exist" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("tool", ["train", "test", "infer", "analyze", "export", "plot_run", "eval_results",
                                  "browse_dataset", "check_dataset"])
def test_every_tool_explains_itself_in_help(repo_root, tool, monkeypatch, capsys):
    """In this process (a subprocess would spend ~5 s importing torch per tool): the tool's script as `__main__`."""
    monkeypatch.chdir(repo_root)
    monkeypatch.setattr(sys, "argv", [f"tools/{tool}.py", "--help"])
    try:
        runpy.run_path(str(repo_root / "tools" / f"{tool}.py"), run_name="__main__")
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    doc = (repo_root / "tools" / f"{tool}.py").read_text().split('"""')[1].strip().splitlines()[0]
    assert out.startswith(doc) and "== Configuration groups ==" in out and "== Config ==" in out
