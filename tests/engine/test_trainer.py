"""The trainer and its build on the shapes dataset, from the config as tools/train.py builds them: mixed precision,
gradient accumulation, the linear LR scaling rule, compile, classes from the data. The built-in callbacks' own
behaviour is tested in tests/engine/callbacks/ on one shared run (`engine_run`)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from framework.config import CONFIG_DIR
from framework.config.validation import ConfigError
from framework.engine.checkpoint import load_checkpoint
from framework.engine.build import build_evaluation, build_trainer, lr_scale_factor
from framework.engine.setup import per_rank_batch_size
from framework.engine.trainer import Trainer

SMALL = ["experiment=shapes_demo", "dataset.batch_size=4", "dataset.val_batch_size=4", "dataset.num_workers=0",
         "dataset.min_size=64", "dataset.max_size=96", "scheduler.warmup_iters=2", "++scheduler.warmup_max_share=0.5",
         "model.head.score_thr=0.01",
         "trainer.eval_interval=1", "trainer.log_interval=1", "trainer.progress_bar=false", "trainer.device=cpu",
         "evaluation.plots=false"]


def compose_train(shapes_root: Path, work_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", [*SMALL, f"dataset.root={shapes_root}", "experiment_name=t", f"work_dir={work_dir}",
                                 *overrides])


def make_trainer(shapes_root: Path, work_dir: Path, *overrides: str) -> Trainer:
    return build_trainer(compose_train(shapes_root, work_dir, *overrides))


def make_evaluation(shapes_root: Path, work_dir: Path, *overrides: str):
    """(model, Evaluation) as tools/test.py builds them, without training parts."""
    return build_evaluation(compose_train(shapes_root, work_dir, *overrides))


def records(work_dir: Path, mode: str) -> list[dict]:
    return [r for r in map(json.loads, (work_dir / "metrics.jsonl").read_text().splitlines()) if r["mode"] == mode]


def tensorboard_scalars(work_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(work_dir / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    out = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    out["images"] = acc.Tags()["images"]
    return out


def test_bf16_autocast_and_accumulation(engine_run):
    """The shared run: bf16 autocast reached the head; 6 batches per epoch at 2 per optimizer step made 3 steps
    per epoch, each one scheduler step."""
    trainer = engine_run.trainer
    assert torch.bfloat16 in engine_run.dtypes
    train = records(engine_run.work_dir, "train")
    assert train and all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in train)
    assert trainer.iter == 6 and [r["iter"] for r in train] == [2, 3, 4, 6]  # log_interval=2 and epoch ends
    assert trainer.scheduler.last_epoch == 6 and trainer.epoch == 2
    assert engine_run.result["best"]["epoch"] in (1, 2) and "bbox/mAP" in engine_run.result["last"]


def test_fp16_uses_a_grad_scaler(shapes_root, tmp_path):
    trainer = make_trainer(shapes_root, tmp_path, "trainer.max_epochs=1", "trainer.precision=fp16")
    assert trainer.scaler.is_enabled()
    try:
        trainer.fit()
    except (RuntimeError, NotImplementedError) as exc:  # an op without a CPU fp16 kernel on this torch build
        pytest.skip(f"fp16 autocast is not supported on this CPU build: {exc}")
    train = records(tmp_path, "train")
    assert all(math.isfinite(r["loss"]) for r in train) and train[-1]["loss_scale"] > 0
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pth")["scaler"]["scale"] > 0


def test_linear_scaling_rule_for_batch_and_world_sizes():
    # (lr, base batch, per-process batch, processes, accumulation) -> effective lr
    for lr, base, per_rank, world, accum, expected in [
        (0.02, 16, 2, 8, 1, 0.02),  # mmdetection's 1x: 8 GPUs x 2 images
        (0.02, 16, 2, 4, 1, 0.01),
        (0.02, 16, 4, 8, 1, 0.04),
        (0.02, 16, 4, 2, 2, 0.02),  # accumulation counts towards the global batch
        (0.01, 64, 16, 1, 1, 0.0025),
    ]:
        assert lr * lr_scale_factor(lr, {"base_batch_size": base}, per_rank, world, accum) == pytest.approx(expected)
    assert lr_scale_factor(0.02, {"base_batch_size": None}, 2, 8, 1) == 1.0
    assert [per_rank_batch_size(16, w) for w in (1, 2, 4, 8, 16)] == [16, 8, 4, 2, 1]
    with pytest.raises(ConfigError, match="dataset.batch_size=6 is the global batch size .* over the 4 processes"):
        per_rank_batch_size(6, 4)


@pytest.mark.parametrize("scheduler", ["step", "onecycle"])
def test_auto_scaled_lr_reaches_optimizer_and_schedule(shapes_root, tmp_path, scheduler):
    trainer = make_trainer(shapes_root, tmp_path, f"scheduler={scheduler}", "optimizer.lr=0.02",
                         "optimizer.auto_scale_lr.base_batch_size=16", "optimizer.paramwise.lr_mult={backbone:0.5}",
                         *(["scheduler.warmup_iters=0"] if scheduler == "step" else  # shapes_demo's step settings
                           ["~scheduler.milestones", "~scheduler.warmup_iters", "~scheduler.warmup_max_share"]))
    groups = trainer.optimizer.param_groups
    # global batch 4 / 16 -> lr 0.005; the backbone's groups get half of it
    peak = {g["name"]: g.get("max_lr", g["initial_lr"]) for g in groups}
    assert {round(v, 10) for k, v in peak.items() if k.startswith("backbone")} == {0.0025}
    assert {round(v, 10) for k, v in peak.items() if not k.startswith("backbone")} == {0.005}
    decay = {g["name"]: g["weight_decay"] for g in groups}
    assert all(v == 0 for k, v in decay.items() if "no-decay" in k) and any(v > 0 for v in decay.values())


def test_compile_option_compiles_backbone_and_neck_in_place(shapes_root, tmp_path, monkeypatch):
    """trainer.compile=true compiles the backbone and neck (TorchDynamo traces them; the eager backend keeps the
    test fast); the state-dict keys, and so checkpoints, stay the same, and the losses match the eager model's."""
    import framework.engine.build as build_module

    real, calls = build_module.compile_model, []
    monkeypatch.setattr(build_module, "compile_model", lambda model: (calls.append(model), real(model, backend="eager")))
    trainer = make_trainer(shapes_root, tmp_path, "trainer.compile=true", "trainer.cudnn_benchmark=true")
    assert calls == [trainer.model] and torch.backends.cudnn.benchmark
    eager = make_trainer(shapes_root, tmp_path / "eager", "deterministic=true").model
    assert not torch.backends.cudnn.benchmark  # deterministic runs never let cuDNN pick algorithms by timing
    assert list(trainer.model.state_dict()) == list(eager.state_dict())
    assert type(trainer.model.backbone).__name__ == type(eager.backbone).__name__  # compiled in place, not wrapped
    eager.load_state_dict(trainer.model.state_dict())
    batch = next(iter(trainer.train_loader))
    losses = [m.train()(batch.images, batch.targets, image_sizes=batch.image_sizes) for m in (trainer.model, eager)]
    for k in losses[1]:
        torch.testing.assert_close(losses[0][k], losses[1][k])
    sum(losses[0].values()).backward()
    assert all(p.grad is not None for p in trainer.model.backbone.parameters() if p.requires_grad)


def test_classes_come_from_the_data(shapes_voc_root, tmp_path, caplog):
    """A VOC folder with a classes.txt needs no dataset.num_classes; the model, the saved config and the
    checkpoint's names follow the data, and a disagreeing count stops the run naming both numbers and the file."""
    overrides = ["dataset=voc07", f"dataset.root={shapes_voc_root}", "trainer.max_epochs=1"]
    with caplog.at_level("INFO", logger="framework"):
        trainer = make_trainer(shapes_voc_root, tmp_path, *overrides)
    classes_txt = shapes_voc_root / "VOC2007" / "classes.txt"
    assert trainer.model.num_classes == 4 and trainer.cfg["dataset"]["num_classes"] == 4
    assert f"4 classes from {classes_txt}" in caplog.text
    assert trainer.state_dict()["meta"]["classes"] == classes_txt.read_text().split()
    with pytest.raises(ConfigError, match=rf"dataset.num_classes=20, but the data has 4 classes .* read from "
                                          rf"{classes_txt}.*dataset.num_classes=4"):
        make_trainer(shapes_voc_root, tmp_path, *overrides, "dataset.num_classes=20")
