"""The detector zoo from the command line: every model config trains a step and detects, and every backbone
composes with every neck (and, with a light backbone, every head) through plain overrides."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from framework.config import CONFIG_DIR
from framework.config.cli import check_overrides
from framework.config.validation import group_options

MODELS = group_options(CONFIG_DIR, "model")
BACKBONES = group_options(CONFIG_DIR, "model/backbone")
NECKS = group_options(CONFIG_DIR, "model/neck")
SIZES = [(96, 128), (80, 112)]
TARGETS = [
    {"boxes": torch.tensor([[4.0, 6.0, 60.0, 50.0], [70.0, 30.0, 120.0, 90.0]]), "labels": torch.tensor([0, 3])},
    {"boxes": torch.tensor([[10.0, 10.0, 40.0, 70.0]]), "labels": torch.tensor([2])},
]


def with_masks(targets: list[dict], sizes: list[tuple[int, int]]) -> list[dict]:
    """The targets with each box filled as its instance mask (uint8 at the image's size), for mask models."""
    out = []
    for t, (h, w) in zip(targets, sizes):
        masks = torch.zeros(len(t["boxes"]), h, w, dtype=torch.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, t["boxes"].round().int().tolist()):
            m[y0:y1, x0:x1] = 1
        out.append({**t, "masks": masks})
    return out


def step_and_detect(overrides: list[str]) -> None:
    """One training step (finite losses, gradients in the backbone), then eval-mode detections with the documented
    fields: per image `boxes` [N, 4] XYXY in original pixels, `scores` [N] descending, `labels` [N] in 0..K-1, and
    for a mask model `masks` [N, H, W] bool at the original size."""
    cfg = check_overrides("train", [*overrides, "dataset.num_classes=4"])
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    images = torch.randn(2, 3, 96, 128)
    targets = with_masks(TARGETS, SIZES) if model.needs_masks else TARGETS
    losses = model(images, targets, image_sizes=SIZES)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reached the backbone"
    model.eval()
    with torch.no_grad():
        dets = model(images, image_sizes=SIZES, orig_sizes=[(192, 256), (80, 112)])
    assert len(dets) == 2
    for det, (h, w) in zip(dets, [(192, 256), (80, 112)]):
        assert set(det) == {"boxes", "scores", "labels"} | ({"masks"} if model.needs_masks else set())
        n = len(det["scores"])
        if model.needs_masks:
            assert det["masks"].shape == (n, h, w) and det["masks"].dtype == torch.bool
        assert det["boxes"].shape == (n, 4) and det["labels"].shape == (n,)
        assert det["boxes"].dtype == torch.float32 and det["labels"].dtype == torch.int64
        if n:
            assert det["labels"].min() >= 0 and det["labels"].max() < 4
            assert det["boxes"][:, 0::2].max() <= w + 1e-3 and det["boxes"][:, 1::2].max() <= h + 1e-3
            assert torch.all(det["scores"][:-1] >= det["scores"][1:])


# random weights give Mask R-CNN 100 detections to paste masks for: a few are enough here
EXTRA = {"mask_rcnn_r50_fpn": ["model.head.roi.max_per_img=10"]}


@pytest.mark.parametrize("model", MODELS)
def test_model_config(model):
    step_and_detect([f"model={model}", *EXTRA.get(model, [])])


@pytest.mark.parametrize("model", MODELS)
def test_model_config_with_a_light_backbone(model):
    """The issue's example: any detector on MobileNetV3 (`model/backbone=mobilenet_v3`), here with a CIoU loss."""
    step_and_detect([f"model={model}", "model/backbone=mobilenet_v3", "model.head.box_loss=ciou", *EXTRA.get(model, [])])


COMBOS = [(b, n) for b in BACKBONES for n in NECKS]


@pytest.mark.parametrize("backbone,neck", COMBOS, ids=[f"{b}+{n}" for b, n in COMBOS])
def test_backbone_neck_combination(backbone, neck):
    """Under the RetinaNet head, narrowed so the test stays fast: every backbone feeds every neck."""
    step_and_detect(["model=resnet50_fpn", f"model/backbone={backbone}", f"model/neck={neck}",
                     "model.neck.out_channels=32", "model.head.feat_channels=32", "model.head.stacked_convs=1"])


# ultralytics' YOLOv8 parameter counts at 80 classes (its model summary, which counts the DFL's 16 fixed weights)
YOLOV8_PARAMETERS = {"n": 3_157_200, "s": 11_166_560, "m": 25_902_640, "l": 43_691_520, "x": 68_229_648}


def test_yolov8_sizes_have_ultralytics_parameter_counts():
    """One override sizes the whole model: width cap, neck depth and head widths follow `model.backbone.size`.
    Composed once, the size then set as the override would (composing per size costs a second each); built on
    the meta device: only the shapes are needed."""
    cfg = check_overrides("train", ["model=yolo_cspdarknet_s", "dataset.num_classes=80"])
    for size, count in YOLOV8_PARAMETERS.items():
        cfg.model.backbone.size = size
        with torch.device("meta"):
            model = instantiate(cfg.model)
        assert sum(p.numel() for p in model.parameters()) == count, size
        assert model.neck.depth == {"n": 1, "s": 1, "m": 2, "l": 3, "x": 3}[size]
