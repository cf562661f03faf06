"""Every option of every config group composes, passes validation and instantiates (lightning-hydra-template's
test_configs, extended to run what it builds)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from framework.config import CONFIG_DIR
from framework.config.cli import check_overrides
from framework.config.validation import group_options
from framework.data.pipeline_dataset import PipelineDataset
from framework.engine.optim import build_optimizer, split_optimizer_node
from framework.engine.schedulers import build_scheduler
from framework.models import Detector


def all_groups() -> list[str]:
    return sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*") if p.is_dir() and any(p.glob("*.yaml")))


GROUP_OPTIONS = [(g, o) for g in all_groups() for o in group_options(CONFIG_DIR, g)]


def test_groups_cover_the_design():
    groups = set(all_groups())
    assert {"model", "model/backbone", "model/neck", "model/head", "dataset", "pipeline", "optimizer", "scheduler",
            "trainer", "experiment"} <= groups


def data_overrides(shapes_root: Path, dataset: str, roots: dict[str, Path] | None = None) -> list[str]:
    if dataset.startswith("voc"):  # the shapes pictures in VOCdevkit layout, with their 4 classes
        return [f"dataset.root={roots['voc']}", "dataset.num_classes=4"]
    if dataset == "cityscapes":  # …in Cityscapes layout (4 of the 8 classes used); small sizes keep it fast
        return [f"dataset.root={roots['cityscapes']}", "dataset.min_size=128", "dataset.max_size=192"]
    if dataset == "yolo":  # …in ultralytics YOLO layout
        return [f"dataset.data={roots['yolo'] / 'data.yaml'}", "dataset.num_classes=4"]
    out = [f"dataset.root={shapes_root}", "dataset.num_classes=4"]  # a model is built here without the runner
    if dataset == "coco":  # point the COCO layout at the shapes files: a real COCO-format folder
        out += [f"dataset.{s}.{k}={v}" for s in ("train", "val") for k, v in
                (("ann_file", f"annotations/instances_{s}.json"), ("img_dir", f"images/{s}"))]
    return out


# options that only fit some models, and a light backbone where the option under test is not the backbone
CONTEXT = {("model/head/cls_loss", "ce"): ["model=faster_rcnn_r50_fpn"],
           ("model/neck", "yolo_pan"): ["model=yolo_cspdarknet_s"],
           # the mask losses belong to a mask head; a few detections keep the mask stage's forward short
           **{("model/head/mask_loss", o): ["model=mask_rcnn_r50_fpn", "model.head.roi.max_per_img=10"]
              for o in ("bce", "dice", "bce_dice")},
           ("model", "mask_rcnn_r50_fpn"): ["model.head.roi.max_per_img=10"],
           ("model/head", "mask_rcnn"): ["model.head.roi.max_per_img=10"],
           # the 1x recipes start from ImageNet weights, which cannot be downloaded here
           **{("experiment", e): ["model.backbone.pretrained=false"] for e in ("retinanet_1x", "fcos_1x", "faster_rcnn_1x")}}
LIGHT = ["model/backbone=resnet18"]


def context(group: str, option: str) -> list[str]:
    extra = CONTEXT.get((group, option), [])
    if group.startswith("model/") and group != "model/backbone":
        extra = [*extra, *LIGHT]
    return extra


@pytest.mark.parametrize("group,option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_option_composes_and_instantiates(group, option, shapes_root, request):
    dataset = option if group == "dataset" else "shapes"
    roots = {"voc": request.getfixturevalue("shapes_voc_root") if dataset.startswith("voc") else None,
             "cityscapes": request.getfixturevalue("shapes_cityscapes_root") if dataset == "cityscapes" else None,
             "yolo": request.getfixturevalue("shapes_yolo_root") if dataset == "yolo" else None}
    cfg = check_overrides("train", [*context(group, option), f"{group}={option}"]
                          + data_overrides(shapes_root, dataset, roots))
    assert cfg is not None
    top = group.split("/")[0]
    if top in ("model", "experiment"):
        model = instantiate(cfg.model).eval()
        assert isinstance(model, Detector)
        with torch.no_grad():
            dets = model(torch.zeros(1, 3, 64, 64))
        assert len(dets) == 1
    if top in ("dataset", "pipeline", "experiment"):
        for split in ("train", "val"):
            ds = PipelineDataset(instantiate(cfg.dataset[split]), instantiate(cfg.pipeline[split]))
            image, target = ds[0]
            assert image.dtype == torch.float32 and image.shape[0] == 3
            assert max(image.shape[-2:]) <= (cfg.dataset.max_size or 10**9)
            assert target["boxes"].shape[-1] == 4
    if top in ("optimizer", "scheduler"):
        node, settings = split_optimizer_node(cfg.optimizer)
        opt = build_optimizer(instantiate(node), torch.nn.Linear(2, 2), **settings["paramwise"])
        sched = build_scheduler(instantiate(cfg.scheduler), opt, iters_per_epoch=10)
        opt.step()
        sched.step()
    if top == "trainer":
        assert cfg.trainer.max_epochs >= 1


def test_readme_commands_compose():
    assert check_overrides("train", []).model.head.num_classes is None  # from the data, filled in by the runner
    cfg = check_overrides("train", ["model=resnet50_fpn", "model/backbone=resnet18", "optimizer.lr=0.005",
                                    "trainer.max_epochs=2", "dataset.batch_size=4"])
    assert cfg.model.backbone.depth == 18 and cfg.optimizer.lr == 0.005 and cfg.dataset.batch_size == 4
    assert check_overrides("train", ["--cfg", "job"]) is not None
    assert check_overrides("test", ["checkpoint=work_dirs/x/y/checkpoints/best.pth"]).checkpoint.endswith("best.pth")
