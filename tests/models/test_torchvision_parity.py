"""Our retinanet_r50_fpn, fcos_r50_fpn, faster_rcnn_r50_fpn and mask_rcnn_r50_fpn configs are torchvision's
detectors: the same parameter count, and torchvision's (seeded, random) weights converted with `convert_torchvision`
give the same detections (and, for Mask R-CNN, the same masks) at photo sizes, on identical inputs and through
`Detector.predict` with pipeline=torchvision on JPEGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.models.detection as tvd
from hydra.utils import instantiate
from PIL import Image, ImageDraw, ImageFilter
from torchvision import tv_tensors
from torchvision.io import decode_image
from torchvision.ops import FrozenBatchNorm2d, box_iou

from framework.config.cli import check_overrides
from framework.data.loader import collate
from framework.evaluation.agreement import matched_share
from framework.inference import Predictor
from framework.models.convert_torchvision import TORCHVISION_MODELS, TWO_STAGE, convert_state_dict

ARCHS = list(TORCHVISION_MODELS)


def torchvision_model(arch: str, num_classes: int = 91, **kwargs) -> torch.nn.Module:
    kwargs.setdefault("weights_backbone", None)
    return getattr(tvd, TORCHVISION_MODELS[arch][1])(weights=None, num_classes=num_classes, **kwargs)


def our_model(arch: str, num_classes: int) -> torch.nn.Module:
    cfg = check_overrides("train", [f"model={TORCHVISION_MODELS[arch][0]}", f"dataset.num_classes={num_classes}"])
    return instantiate(cfg.model)


def our_classes(arch: str, tv_classes: int = 91) -> int:
    return tv_classes - 1 if arch in TWO_STAGE else tv_classes  # torchvision counts background for R-CNN


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_equals_torchvision(arch):
    tv = sum(p.numel() for p in torchvision_model(arch).parameters())
    ours = sum(p.numel() for p in our_model(arch, our_classes(arch)).parameters())
    assert ours == tv, (arch, ours, tv)
    assert ours == {"retinanet": 34_068_119, "fcos": 32_322_720, "faster_rcnn": 41_808_406,
                    "mask_rcnn": 44_454_513}[arch]


def spread_out(tv: torch.nn.Module, arch: str, calibrate_on: list[torch.Tensor] | None = None) -> None:
    """Make random weights produce detections worth comparing: class/box outputs wide enough that many boxes pass
    the score thresholds with distinct scores; with `calibrate_on`, BatchNorm statistics are first measured on those
    images (so features stay in range through ResNet-50), else the initial statistics stay (features grow large)."""
    if calibrate_on is not None:
        tv.train()
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        h = max(i.shape[1] for i in calibrate_on)
        w = max(i.shape[2] for i in calibrate_on)
        with torch.no_grad():
            tv.backbone(torch.stack([torch.nn.functional.pad(i, (0, w - i.shape[2], 0, h - i.shape[1]))
                                     for i in calibrate_on]))
    with torch.no_grad():
        if arch in TWO_STAGE:
            tv.rpn.head.cls_logits.weight.normal_(0, 0.05)
            tv.roi_heads.box_predictor.cls_score.weight.normal_(0, 0.05)
            tv.roi_heads.box_predictor.bbox_pred.weight.normal_(0, 0.02)
            if arch == "mask_rcnn":  # per-class weights of zero mean: masks cover about half of their box, varied
                logits = tv.roi_heads.mask_predictor.mask_fcn_logits  # (otherwise most are a few pixels or empty)
                logits.weight.normal_(0, 0.03)
                logits.weight -= logits.weight.mean(1, keepdim=True)
                logits.bias.zero_()
        else:
            cls = tv.head.classification_head.cls_logits
            cls.weight.normal_(0, 0.02)
            cls.bias.fill_(-2.5 if arch == "retinanet" else -1.5)
            tv.head.regression_head.bbox_reg.weight.normal_(0, 0.01)
            if arch == "fcos":
                tv.head.regression_head.bbox_reg.bias.fill_(2.0)
    tv.eval()


def write_photo(path: Path, height: int, width: int, seed: int) -> Path:
    """A photo-like JPEG: a smooth colour field, a few filled shapes with soft edges, sensor noise, JPEG-compressed
    (the decoding and 8-bit quantization of a real photo, with content at every scale)."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (height // 40 + 2, width // 40 + 2, 3), dtype=np.uint8))
    image = field.resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(width // 20, width // 4), rng.integers(height // 20, height // 4)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x, y, x + w, y + h], fill=colour)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32)
    pixels += rng.normal(0, 4, pixels.shape)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Two JPEG photos of different sizes and aspect ratios (480x640 and 400x500: 600x800 and 600x750 after
    torchvision's resize at min_size 600)."""
    root = tmp_path_factory.mktemp("photos")
    return [write_photo(root / "a.jpg", 480, 640, 1), write_photo(root / "b.jpg", 400, 500, 2)]


def torchvision_pipeline(arch: str) -> list[str]:
    """Our config for a converted checkpoint at the photo sizes used here (torchvision's detectors built with
    min_size=600, max_size=1000)."""
    return [f"model={TORCHVISION_MODELS[arch][0]}", "pipeline=torchvision", f"dataset.num_classes={our_classes(arch)}",
            "dataset.min_size=600", "dataset.max_size=1000"]


LABEL_SHIFT = {"faster_rcnn": 1, "mask_rcnn": 1}  # our labels never include torchvision's background slot


def matched_mask_ious(references: list[dict], candidates: list[dict], label_shift: int) -> torch.Tensor:
    """Mask IoU of every reference detection with the candidate that reproduces it (same label, score within 1e-3,
    the best box IoU >= 0.99); torchvision's masks are probabilities, read at 0.5 as ours are."""
    ious = []
    for ref, cand in zip(references, candidates, strict=True):
        box = box_iou(ref["boxes"].double(), cand["boxes"].double())
        same = (box >= 0.99) & ((ref["labels"][:, None] - label_shift) == cand["labels"][None]) \
            & ((ref["scores"][:, None] - cand["scores"][None]).abs() <= 1e-3)
        found = same.any(1)
        pair = torch.where(same, box, -1.0).argmax(1)[found]
        a, b = ref["masks"][found, 0] > 0.5, cand["masks"][pair]
        assert b.dtype == torch.bool and a.shape == b.shape
        union = (a | b).flatten(1).sum(1)
        ious.append(torch.where(union > 0, (a & b).flatten(1).sum(1) / union.clamp(min=1), 1.0))
    return torch.cat(ious)


def check_masks(expected: list[dict], got: list[dict], arch: str) -> None:
    """For Mask R-CNN: the masks are non-trivial and every matched one has mask IoU >= 0.99."""
    if arch != "mask_rcnn":
        return
    areas = torch.cat([(e["masks"][:, 0] > 0.5).flatten(1).sum(1) for e in expected])
    assert (areas > 100).float().mean() > 0.5, "the comparison needs masks of some size"
    ious = matched_mask_ious(expected, got, LABEL_SHIFT[arch])
    assert len(ious) >= 0.99 * len(areas) and ious.min() >= 0.99, ious.min()


@pytest.mark.parametrize("arch", ARCHS)
def test_identical_photo_size_inputs_give_torchvision_detections(arch, photos):
    """BatchNorm calibrated on the input; one 600x800 image (padded to 608x800: irregular P6/P7 strides), fed to
    both sides already normalized and resized."""
    cfg = check_overrides("train", torchvision_pipeline(arch))
    image = instantiate(cfg.pipeline.val)(tv_tensors.Image(decode_image(str(photos[0]))), {})[0]
    image = image.as_subclass(torch.Tensor)
    assert tuple(image.shape[-2:]) == (600, 800)
    torch.manual_seed(0)
    tv = torchvision_model(arch)
    spread_out(tv, arch, calibrate_on=[image])
    ours = instantiate(cfg.model)
    ours.load_state_dict(convert_state_dict(tv.state_dict(), arch), strict=True)
    ours.eval()
    tv.transform.resize = lambda image, target=None: (image, target)  # the input is already resized…
    tv.transform.normalize = lambda image: image  # …and normalized
    batch = collate([(image, {})])
    with torch.no_grad():
        expected = tv([image.clone()])
        got = ours(batch.images, image_sizes=batch.image_sizes)
    assert len(expected[0]["boxes"]) > 20, "the comparison needs detections"
    assert matched_share(expected, got, LABEL_SHIFT.get(arch, 0)) >= 0.99
    check_masks(expected, got, arch)


# Faster R-CNN's box path is Mask R-CNN's, checked here with the masks: one two-stage model is enough (20 s each)
@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "faster_rcnn"])
def test_predictor_on_jpeg_photos_gives_torchvision_detections(arch, photos):
    """Random BatchNorm statistics (not calibrated); the JPEG files go through `Detector.predict_batch` with
    pipeline=torchvision on our side and through torchvision's own transform on the other, both images in one batch."""
    torch.manual_seed(0)
    tv = torchvision_model(arch, min_size=600, max_size=1000)
    spread_out(tv, arch)
    detector = Predictor.from_config(check_overrides("train", torchvision_pipeline(arch)),
                                    convert_state_dict(tv.state_dict(), arch))
    got = detector.predict_batch(photos)
    with torch.no_grad():
        expected = tv([decode_image(str(p)).float() / 255 for p in photos])
    for ref in expected:
        assert len(ref["boxes"]) > 20, "the comparison needs detections"
    assert matched_share(expected, got, LABEL_SHIFT.get(arch, 0)) >= 0.99
    check_masks(expected, got, arch)


def test_folded_frozen_norm_differs_from_torchvision_only_by_rounding(photos):
    """With `norm_frozen=true` (torchvision's FrozenBatchNorm2d, folded into the convolutions for speed) float32
    outputs differ from torchvision's in the last bits; in float64 on both sides the features and every head output
    agree to 1e-9, which shows the float32 gap is rounding (a photo-size 600x750 input, uncalibrated statistics)."""
    arch = "fcos"
    cfg = check_overrides("train", [*torchvision_pipeline(arch), "model.backbone.norm_frozen=true"])
    image = instantiate(cfg.pipeline.val)(tv_tensors.Image(decode_image(str(photos[1]))), {})[0]
    batch = collate([(image.as_subclass(torch.Tensor), {})]).images.double()
    torch.manual_seed(0)
    tv = torchvision_model(arch, norm_layer=FrozenBatchNorm2d)
    spread_out(tv, arch)
    ours = instantiate(cfg.model)
    ours.load_state_dict(convert_state_dict(tv.state_dict(), arch), strict=True)
    tv, ours = tv.double().eval(), ours.double().eval()
    with torch.no_grad():
        theirs = list(tv.backbone(batch).values())
        mine = ours.extract_features(batch)
        head_theirs = tv.head(theirs)
        cls, dist, ctr, _ = ours.head(mine)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0)
    torch.testing.assert_close(cls, head_theirs["cls_logits"], atol=1e-9, rtol=0)
    torch.testing.assert_close(dist, torch.relu(head_theirs["bbox_regression"]), atol=1e-9, rtol=0)
    torch.testing.assert_close(ctr, head_theirs["bbox_ctrness"].squeeze(-1), atol=1e-9, rtol=0)
