"""The logging callbacks on the shared run: the progress line (Progress), metrics.jsonl and results.png
(MetricsLog), TensorBoard scalars with the lr of every step (TensorBoard), and validation images and PR/F1/
confusion plots (Visualization)."""
from __future__ import annotations

import math

from tests.engine.test_trainer import records, tensorboard_scalars


def test_progress_lines_and_train_records(engine_run):
    lines = [line for line in engine_run.log if line.startswith("Epoch ") and " iter " in line]
    # log_interval=2 (iterations 2 and 4) and the last step of each epoch (3 and 6)
    assert [line.split(" loss_cls")[0] for line in lines] == [
        "Epoch 1/2 iter 2/3", "Epoch 1/2 iter 3/3", "Epoch 2/2 iter 1/3", "Epoch 2/2 iter 3/3"]
    assert all(" img/s data " in line and " eta " in line for line in lines)
    train = records(engine_run.work_dir, "train")
    assert [r["iter"] for r in train] == [2, 3, 4, 6] and all(math.isfinite(r["grad_norm"]) for r in train)
    assert {"loss", "loss_cls", "lr", "images_per_s", "data_share", "memory_gib"} <= set(train[0])


def test_metrics_jsonl_and_results_png(engine_run):
    val = records(engine_run.work_dir, "val")
    assert [r["epoch"] for r in val] == [1, 2] and all("bbox/mAP" in r for r in val)
    assert (engine_run.work_dir / "results.png").stat().st_size > 10_000


def test_tensorboard_scalars_images_and_plots(engine_run):
    tb = tensorboard_scalars(engine_run.work_dir)
    assert len(tb["train/lr_iter"]) == 6  # the lr of every optimizer step
    assert tb["train/lr_iter"][0] < tb["train/lr_iter"][1]  # warmup: 2 steps
    assert {"train/data_share", "train/images_per_s", "train/memory_gib", "val/bbox/mAP"} <= set(tb)
    assert {"val_images/0", "val_images/1"} <= set(tb["images"])  # vis_images=2
    assert {"val/pr_curve", "val/f1_curve", "val/confusion_matrix"} <= set(tb["images"])
    for name in ("pr_curve.png", "f1_curve.png", "confusion_matrix.png"):
        assert (engine_run.work_dir / name).stat().st_size > 5_000
