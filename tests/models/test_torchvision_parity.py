"""Our retinanet_r50_fpn, fcos_r50_fpn and faster_rcnn_r50_fpn configs are torchvision's detectors: the same
parameter count, and torchvision's (seeded, random) weights converted with `convert_torchvision` give the same
detections on the same preprocessed images."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.models.detection as tvd
from hydra.utils import instantiate
from torchvision.transforms import v2

from framework.config.cli import check_overrides
from framework.data.datasets.shapes import ShapesDataset
from framework.data.loader import collate
from framework.data.transforms import Normalize
from framework.models.convert_torchvision import TORCHVISION_MODELS, coco_slots, convert_state_dict

ARCHS = list(TORCHVISION_MODELS)


def torchvision_model(arch: str, num_classes: int = 91) -> torch.nn.Module:
    return getattr(tvd, TORCHVISION_MODELS[arch][1])(weights=None, weights_backbone=None, num_classes=num_classes)


def our_model(arch: str, num_classes: int) -> torch.nn.Module:
    cfg = check_overrides("train", [f"model={TORCHVISION_MODELS[arch][0]}", f"dataset.num_classes={num_classes}"])
    return instantiate(cfg.model)


def our_classes(arch: str, tv_classes: int = 91) -> int:
    return tv_classes - 1 if arch == "faster_rcnn" else tv_classes  # torchvision counts background for R-CNN


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_equals_torchvision(arch):
    tv = sum(p.numel() for p in torchvision_model(arch).parameters())
    ours = sum(p.numel() for p in our_model(arch, our_classes(arch)).parameters())
    assert ours == tv, (arch, ours, tv)
    assert ours == {"retinanet": 34_068_119, "fcos": 32_322_720, "faster_rcnn": 41_808_406}[arch]


def spread_out(tv: torch.nn.Module, arch: str, images: list[torch.Tensor]) -> None:
    """Make random weights produce detections worth comparing: BatchNorm statistics calibrated on the images (so
    features stay in range through ResNet-50) and class/box outputs wide enough that many boxes pass the score
    thresholds with distinct scores."""
    tv.train()
    for m in tv.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    h = max(i.shape[1] for i in images)
    w = max(i.shape[2] for i in images)
    with torch.no_grad():
        tv.backbone(torch.stack([torch.nn.functional.pad(i, (0, w - i.shape[2], 0, h - i.shape[1])) for i in images]))
        if arch == "faster_rcnn":
            tv.rpn.head.cls_logits.weight.normal_(0, 0.05)
            tv.roi_heads.box_predictor.cls_score.weight.normal_(0, 0.05)
            tv.roi_heads.box_predictor.bbox_pred.weight.normal_(0, 0.02)
        else:
            cls = tv.head.classification_head.cls_logits
            cls.weight.normal_(0, 0.02)
            cls.bias.fill_(-2.5 if arch == "retinanet" else -1.5)
            tv.head.regression_head.bbox_reg.weight.normal_(0, 0.01)
            if arch == "fcos":
                tv.head.regression_head.bbox_reg.bias.fill_(2.0)
    tv.eval()


def canonical(det: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detections sorted by (score desc, label, box): equal-score ties may come out of NMS in either order."""
    key = torch.cat([-det["scores"][:, None].double(), det["labels"][:, None].double(), det["boxes"].double()], 1)
    order = torch.as_tensor(np.lexsort(key.numpy().T[::-1]).copy())
    return {k: v[order] for k, v in det.items()}


@pytest.fixture(scope="module")
def images(shapes_root) -> list[torch.Tensor]:
    """Two preprocessed shapes images of different sizes (the batch is padded; P6/P7 strides are irregular)."""
    data = ShapesDataset(str(shapes_root), split="val", transforms=v2.Compose([v2.Resize(192, max_size=256), Normalize()]))
    out = [data[0][0].as_subclass(torch.Tensor), data[1][0].as_subclass(torch.Tensor)]
    if out[0].shape == out[1].shape:
        out[1] = out[1][:, :160, :224]
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_converted_torchvision_weights_give_the_same_detections(arch, images):
    torch.manual_seed(0)
    tv = torchvision_model(arch)
    spread_out(tv, arch, images)
    ours = our_model(arch, our_classes(arch))
    ours.load_state_dict(convert_state_dict(tv.state_dict(), arch), strict=True)
    ours.eval()
    # feed torchvision the same preprocessed pixels: no resize, no normalization (its padding is ours: to 32)
    tv.transform.resize = lambda image, target=None: (image, target)
    tv.transform.normalize = lambda image: image
    batch = collate([(img, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}) for img in images])
    with torch.no_grad():
        expected = tv([img.clone() for img in images])
        got = ours(batch.images, image_sizes=batch.image_sizes)
    label_shift = 1 if arch == "faster_rcnn" else 0  # our labels never include torchvision's background slot
    for ref, det in zip(expected, got):
        assert len(ref["boxes"]) > 20, "the comparison needs detections"
        ref, det = canonical(ref), canonical(det)
        assert len(det["boxes"]) == len(ref["boxes"])
        torch.testing.assert_close(det["boxes"], ref["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(det["scores"], ref["scores"], atol=1e-4, rtol=0)
        assert torch.equal(det["labels"], ref["labels"] - label_shift)


@pytest.mark.parametrize("arch", ARCHS)
def test_class_selection_keeps_the_chosen_slots(arch):
    """Converting to the 80 COCO classes keeps exactly the logits of those category-id slots, in order."""
    torch.manual_seed(0)
    state = torchvision_model(arch).state_dict()
    names = list(getattr(tvd, TORCHVISION_MODELS[arch][2]).COCO_V1.meta["categories"])
    slots = coco_slots(names)
    assert len(slots) == 80 and slots[:3] == [1, 2, 3] and slots[-1] == 90
    ours = our_model(arch, 80)
    ours.load_state_dict(convert_state_dict(state, arch, slots), strict=True)
    if arch == "faster_rcnn":
        w = state["roi_heads.box_predictor.cls_score.weight"]
        torch.testing.assert_close(ours.head.roi.cls_out.weight, w[[0] + slots])
        b = state["roi_heads.box_predictor.bbox_pred.weight"].reshape(91, 4, -1)
        torch.testing.assert_close(ours.head.roi.box_out.weight.reshape(81, 4, -1), b[[0] + slots])
    else:
        w = state["head.classification_head.cls_logits.weight"]
        anchors = 9 if arch == "retinanet" else 1
        expected = w.reshape(anchors, 91, *w.shape[1:])[:, slots].reshape(-1, *w.shape[1:])
        torch.testing.assert_close(ours.head.cls_out.weight, expected)
