"""Each family's reference recipe ships as an experiment config, and a YOLO run under the generic step default is
told which one to use."""
import pytest
import torch
from torch import nn

from framework.config.cli import check_overrides
from framework.engine.recipes import recipe_hint
from framework.engine.schedulers import WarmupLR
from framework.models.heads import YOLOHead


def model_with(head: nn.Module) -> nn.Module:
    model = nn.Module()
    model.head = head
    return model


def schedule(policy: str) -> WarmupLR:
    return WarmupLR(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), policy=policy, milestones=[0.5])


def test_yolo_under_the_step_default_is_pointed_at_its_recipe():
    yolo = model_with(YOLOHead(num_classes=3, in_channels=[32, 64, 128]))
    assert "experiment=yolov8" in recipe_hint(yolo, schedule("step"))
    assert recipe_hint(yolo, schedule("linear")) is None
    assert recipe_hint(model_with(nn.Identity()), schedule("step")) is None


@pytest.mark.parametrize("experiment,expected", [
    ("yolov8", {"optimizer._target_": "torch.optim.AdamW", "optimizer.weight_decay": 0.0005,
                "scheduler.policy": "linear", "scheduler.warmup_epochs": 3, "scheduler.min_ratio": 0.01,
                "pipeline.close_mosaic_epochs": 10, "pipeline.mixup.prob": 0.0, "trainer.ema.enabled": True,
                "model.head.box_loss.loss_weight": 7.5, "model.head.cls_loss.loss_weight": 0.5,
                "dataset.batch_size": 16}),
    ("retinanet_1x", {"optimizer.lr": 0.01, "optimizer.auto_scale_lr.base_batch_size": 16,
                      "scheduler.milestones": [0.667, 0.917], "trainer.max_epochs": 12, "trainer.grad_clip_norm": 35.0,
                      "model.backbone.norm_frozen": True}),
    ("fcos_1x", {"optimizer.lr": 0.01, "scheduler.warmup": "constant", "trainer.grad_clip_norm": 35.0}),
    ("faster_rcnn_1x", {"optimizer.lr": 0.02, "scheduler.warmup_iters": 500, "trainer.max_epochs": 12}),
])
def test_recipes_carry_their_reference_settings(experiment, expected):
    cfg = check_overrides("train", [f"experiment={experiment}"])
    for key, value in expected.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert (list(node) if isinstance(value, list) else node) == value, key
