"""The runner's training features on the shapes dataset, built from the config as tools/train.py builds them:
mixed precision, EMA, gradient accumulation, keep-K checkpoints, early stopping, the linear LR scaling rule and
the logs (lr every iteration, validation images in TensorBoard, results.png)."""
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
from framework.engine.runner import Runner, _lr_scale, per_rank_batch_size

SMALL = ["experiment=shapes_demo", "dataset.batch_size=4", "dataset.val_batch_size=4", "dataset.num_workers=0",
         "dataset.min_size=64", "dataset.max_size=96", "scheduler.warmup_iters=2", "++scheduler.warmup_max_share=0.5",
         "model.head.score_thr=0.01",
         "trainer.eval_interval=1", "trainer.log_interval=1", "trainer.progress_bar=false", "trainer.device=cpu",
         "evaluation.plots=false"]


def make_runner(shapes_root: Path, work_dir: Path, *overrides: str, training: bool = True) -> Runner:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [*SMALL, f"dataset.root={shapes_root}", "experiment_name=t", f"work_dir={work_dir}",
                                *overrides])
    return Runner.from_config(cfg, training=training)


def records(work_dir: Path, mode: str) -> list[dict]:
    return [r for r in map(json.loads, (work_dir / "metrics.jsonl").read_text().splitlines()) if r["mode"] == mode]


def tensorboard_scalars(work_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(work_dir / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    out = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    out["images"] = acc.Tags()["images"]
    return out


def test_bf16_ema_accumulation_and_keep_k(shapes_root, tmp_path):
    runner = make_runner(shapes_root, tmp_path, "trainer.max_epochs=2", "trainer.precision=bf16",
                         "trainer.ema.enabled=true", "trainer.ema.tau=2", "trainer.accumulate=2",
                         "trainer.checkpoint_interval=1", "trainer.keep_checkpoints=1", "trainer.vis_images=2")
    dtypes = set()
    runner.model.head.register_forward_hook(lambda m, i, o: dtypes.add(o[0][0].dtype) if m.training else None)
    runner.train()
    assert torch.bfloat16 in dtypes  # the head ran under bf16 autocast
    train = records(tmp_path, "train")
    assert train and all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in train)
    # 6 batches per epoch, 2 per optimizer step: 3 steps per epoch
    assert runner.iter == 6 and [r["iter"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert runner.scheduler.last_epoch == 6
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pth")
    assert ckpt["ema"] == {"updates": 6}
    ema_state, raw_state = runner.ema.module.state_dict(), runner.model.state_dict()
    assert all(torch.equal(ckpt["model"][k], ema_state[k]) for k in ema_state)  # evaluated weights = EMA
    assert all(torch.equal(ckpt["train_model"][k], raw_state[k]) for k in raw_state)
    assert any(not torch.equal(ema_state[k], raw_state[k]) for k in raw_state if raw_state[k].is_floating_point())
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {"last.pth", "best.pth", "epoch_2.pth"}
    tb = tensorboard_scalars(tmp_path)
    assert len(tb["train/lr_iter"]) == 6  # the lr of every optimizer step
    assert tb["train/lr_iter"][0] < tb["train/lr_iter"][1]  # warmup: 2 steps
    assert {"train/data_share", "train/images_per_s", "train/memory_gib", "val/bbox_mAP"} <= set(tb)
    assert tb["images"] == ["val_images/0", "val_images/1"]
    assert (tmp_path / "results.png").stat().st_size > 10_000


def test_fp16_uses_a_grad_scaler(shapes_root, tmp_path):
    runner = make_runner(shapes_root, tmp_path, "trainer.max_epochs=1", "trainer.precision=fp16")
    assert runner.scaler.is_enabled()
    try:
        runner.train()
    except (RuntimeError, NotImplementedError) as exc:  # an op without a CPU fp16 kernel on this torch build
        pytest.skip(f"fp16 autocast is not supported on this CPU build: {exc}")
    train = records(tmp_path, "train")
    assert all(math.isfinite(r["loss"]) for r in train) and train[-1]["loss_scale"] > 0
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pth")["scaler"]["scale"] > 0


def test_early_stopping_saves_last_and_says_so(shapes_root, tmp_path, caplog):
    # shapes has no large objects: bbox_mAP_l is -1 at every evaluation, a new best only at epoch 1, so
    # patience=1 stops after epoch 2 of 4
    runner = make_runner(shapes_root, tmp_path, "trainer.max_epochs=4", "trainer.patience=1",
                         "trainer.best_metric=bbox_mAP_l")
    with caplog.at_level("INFO", logger="framework"):
        runner.train()
    assert runner.epoch == 2 and "trainer.patience=1" in runner.stop_reason
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pth")["epoch"] == 2
    assert "resume=true" in caplog.text


def test_linear_scaling_rule_for_batch_and_world_sizes():
    # (lr, base batch, per-process batch, processes, accumulation) -> effective lr
    for lr, base, per_rank, world, accum, expected in [
        (0.02, 16, 2, 8, 1, 0.02),  # mmdetection's 1x: 8 GPUs x 2 images
        (0.02, 16, 2, 4, 1, 0.01),
        (0.02, 16, 4, 8, 1, 0.04),
        (0.02, 16, 4, 2, 2, 0.02),  # accumulation counts towards the global batch
        (0.01, 64, 16, 1, 1, 0.0025),
    ]:
        assert lr * _lr_scale(lr, {"base_batch_size": base}, per_rank, world, accum) == pytest.approx(expected)
    assert _lr_scale(0.02, {"base_batch_size": None}, 2, 8, 1) == 1.0
    assert [per_rank_batch_size(16, w) for w in (1, 2, 4, 8, 16)] == [16, 8, 4, 2, 1]
    with pytest.raises(ConfigError, match="dataset.batch_size=6 is the global batch size .* over the 4 processes"):
        per_rank_batch_size(6, 4)


@pytest.mark.parametrize("scheduler", ["step", "onecycle"])
def test_auto_scaled_lr_reaches_optimizer_and_schedule(shapes_root, tmp_path, scheduler):
    runner = make_runner(shapes_root, tmp_path, f"scheduler={scheduler}", "optimizer.lr=0.02",
                         "optimizer.auto_scale_lr.base_batch_size=16", "optimizer.paramwise.lr_mult={backbone:0.5}",
                         *(["scheduler.warmup_iters=0"] if scheduler == "step" else  # shapes_demo's step settings
                           ["~scheduler.milestones", "~scheduler.warmup_iters", "~scheduler.warmup_max_share"]))
    groups = runner.optimizer.param_groups
    # global batch 4 / 16 -> lr 0.005; the backbone's groups get half of it
    peak = {g["name"]: g.get("max_lr", g["initial_lr"]) for g in groups}
    assert {round(v, 10) for k, v in peak.items() if k.startswith("backbone")} == {0.0025}
    assert {round(v, 10) for k, v in peak.items() if not k.startswith("backbone")} == {0.005}
    decay = {g["name"]: g["weight_decay"] for g in groups}
    assert all(v == 0 for k, v in decay.items() if "no-decay" in k) and any(v > 0 for v in decay.values())


def test_compile_option_compiles_backbone_and_neck_in_place(shapes_root, tmp_path, monkeypatch):
    """trainer.compile=true compiles the backbone and neck (TorchDynamo traces them; the eager backend keeps the
    test fast); the state-dict keys, and so checkpoints, stay the same, and the losses match the eager model's."""
    import framework.engine.runner as runner_module

    real, calls = runner_module.compile_model, []
    monkeypatch.setattr(runner_module, "compile_model", lambda model: (calls.append(model), real(model, backend="eager")))
    runner = make_runner(shapes_root, tmp_path, "trainer.compile=true", "trainer.cudnn_benchmark=true")
    assert calls == [runner.model] and torch.backends.cudnn.benchmark
    eager = make_runner(shapes_root, tmp_path / "eager", "deterministic=true").model
    assert not torch.backends.cudnn.benchmark  # deterministic runs never let cuDNN pick algorithms by timing
    assert list(runner.model.state_dict()) == list(eager.state_dict())
    assert type(runner.model.backbone).__name__ == type(eager.backbone).__name__  # compiled in place, not wrapped
    eager.load_state_dict(runner.model.state_dict())
    batch = next(iter(runner.train_loader))
    losses = [m.train()(batch.images, batch.targets, image_sizes=batch.image_sizes) for m in (runner.model, eager)]
    for k in losses[1]:
        torch.testing.assert_close(losses[0][k], losses[1][k])
    sum(losses[0].values()).backward()
    assert all(p.grad is not None for p in runner.model.backbone.parameters() if p.requires_grad)


def test_max_time_fits_the_epochs_and_the_schedule_to_the_budget(shapes_root, tmp_path, caplog, monkeypatch):
    """trainer.max_time: after each epoch the number of epochs that fit is re-estimated (here forced to 2 of the
    configured 5) and the schedule and the run follow it: milestone fractions land on the new length and the run
    ends, evaluated, at epoch 2."""
    import framework.engine.runner as runner_module

    estimates = []
    monkeypatch.setattr(runner_module, "epochs_within_budget",
                        lambda budget, elapsed, done: estimates.append((budget, done)) or 2)
    runner = make_runner(shapes_root, tmp_path, "trainer.max_epochs=5", "trainer.max_time=1.0",
                         "scheduler.milestones=[0.5]", "trainer.eval_interval=5")
    with caplog.at_level("INFO", logger="framework"):
        result = runner.train()
    assert estimates == [(3600.0, 1)]  # once: after epoch 1 the run already has its length
    assert runner.epoch == 2 and runner.max_epochs == 2 and runner.scheduler.milestones == [1]
    assert result["last"] and "so 2 epochs fit (was 5)" in caplog.text
    assert [r["epoch"] for r in records(tmp_path, "val")] == [2]  # the last epoch is evaluated


def test_max_time_refuses_a_schedule_it_cannot_fit(shapes_root, tmp_path):
    with pytest.raises(ConfigError, match="cannot be epochs; give them as fractions"):
        make_runner(shapes_root, tmp_path, "trainer.max_epochs=5", "trainer.max_time=1.0", "scheduler.milestones=[3]")


def test_classes_come_from_the_data(shapes_voc_root, tmp_path, caplog):
    """A VOC folder with a classes.txt needs no dataset.num_classes; the model, the saved config and the
    checkpoint's names follow the data, and a disagreeing count stops the run naming both numbers and the file."""
    overrides = ["dataset=voc07", f"dataset.root={shapes_voc_root}", "trainer.max_epochs=1"]
    with caplog.at_level("INFO", logger="framework"):
        runner = make_runner(shapes_voc_root, tmp_path, *overrides)
    classes_txt = shapes_voc_root / "VOC2007" / "classes.txt"
    assert runner.model.num_classes == 4 and runner.config["dataset"]["num_classes"] == 4
    assert f"4 classes from {classes_txt}" in caplog.text
    assert runner.state_dict()["meta"]["classes"] == classes_txt.read_text().split()
    with pytest.raises(ConfigError, match=rf"dataset.num_classes=20, but the data has 4 classes .* read from "
                                          rf"{classes_txt}.*dataset.num_classes=4"):
        make_runner(shapes_voc_root, tmp_path, *overrides, "dataset.num_classes=20")
