"""Instance masks stay on their boxes through every transform and every preset pipeline (hypothesis).

Samples are small images (24–96 px) with up to five instances, each a filled axis-aligned rectangle or an ellipse
inscribed in a rectangle; its box is the exact bounding box of its mask pixels, so mask and box agree before the
transform. After it, per instance (same order as `boxes` and `labels`), with the mask's bounding box taken over its
pixels (pixel i spans [i, i + 1]):

- *contained*, every transform, every shape: the mask's box lies inside the box, give or take `tol`. It holds under
  any warp: a pixel is in the warped mask when its sampling point maps into a mask pixel, hence into the box before
  the transform, hence into the box after it (the enclosing box of the moved corners); the pixel itself sticks out
  by at most 1 px (0.5 with pixel-centre sampling). This is all one can say under rotation or shear, where the box of
  a rotated box is larger than the box of the rotated object (and sharp corners lose their tip pixels).
- *tight*, axis-aligned transforms (flips, resizes, letterbox, crops, zoom out, Mosaic, MixUp, our RandomAffine
  without rotation or shear): for rectangles, each edge of the mask's box is within `tol` of the box's, clipped or
  not (the box and the mask are cut by the same border). A rectangle [x0, x1) resampled by s covers
  [ceil(x0·s), ceil(x1·s)) with torch's "nearest" (torchvision's masks: under 1 px off) and [round(x0·s), round(x1·s))
  with pixel-centre sampling (ours: within 0.5 px), so one resampling stays within 1 px. Ellipses are only checked
  for containment: shrinking can skip the few rows of an ellipse's tip.
- *untouched*, photometric transforms and GridMask: the masks come out equal to the masks that went in.

And for every transform, a sample with masks gives bit-identical image, boxes and labels to the same sample without
them under the same seed: masks cost a box model nothing and change no random draw.

The preset pipelines chain transforms: one resampling in `basic`, `gridmask`, `torchvision` and `ssd_style` (the
crop, zoom out and flip move whole pixels), so 1 px; `yolo_style` and `mosaic_gridmask` resample twice (the resize
before Mosaic, then the affine with scale up to 1.5 and, for a MixUp partner, MixUp's own rescale), and the first
error is carried through the second's scale: at most 1 × 1.5 + 0.5 = 2 px.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torchvision import tv_tensors
from torchvision.transforms import v2

from framework.config import CONFIG_DIR
from framework.config.instantiation import instantiate
from framework.data.transforms import (GaussianNoise, GridMask, HSVJitter, Letterbox, MixUp, Mosaic, Normalize,
                                       PCALighting, Pipeline, RandomAffine, RCNNResize, image_fill)

RECT, ELLIPSE = 0, 1  # an instance's label says its shape
# No shrinking: a failing example (five small instances at most) reads well as it is, and shrinking one through a
# pipeline takes minutes.
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                    phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def samples(draw: Callable, min_side: int = 24, max_side: int = 96, max_instances: int = 5):
    """(image, target) with `masks`; each instance a rectangle or an ellipse at least 4 px across."""
    h, w = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    n = draw(st.integers(0, max_instances))
    masks = torch.zeros((n, h, w), dtype=torch.uint8)
    labels = []
    for i in range(n):
        bw, bh = draw(st.integers(4, w)), draw(st.integers(4, h))
        x0, y0 = draw(st.integers(0, w - bw)), draw(st.integers(0, h - bh))
        kind = draw(st.sampled_from([RECT, ELLIPSE]))
        if kind == RECT:
            masks[i, y0:y0 + bh, x0:x0 + bw] = 1
        else:  # pixel centres inside the ellipse inscribed in the rectangle
            ys = (torch.arange(h) + 0.5 - (y0 + bh / 2)) / (bh / 2)
            xs = (torch.arange(w) + 0.5 - (x0 + bw / 2)) / (bw / 2)
            masks[i] = (ys[:, None] ** 2 + xs[None, :] ** 2 <= 1).to(torch.uint8)
        labels.append(kind)
    boxes = torch.stack([mask_box(m) for m in masks]) if n else torch.zeros((0, 4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
              "labels": torch.tensor(labels, dtype=torch.int64), "masks": tv_tensors.Mask(masks),
              "image_id": draw(st.integers(0, 1000))}
    return tv_tensors.Image(image), target


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """XYXY box of the mask's pixels (empty mask: NaN)."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return torch.full((4,), float("nan"))
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def without_masks(sample: tuple[Any, dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    image, target = sample
    return image, {k: v for k, v in target.items() if k != "masks"}


def check_aligned(image: torch.Tensor, target: dict[str, Any], mode: str, tol: float) -> int:
    """Asserts the alignment of `mode` ("tight" or "contained"); returns how many instances were checked."""
    masks, boxes, labels = target["masks"], target["boxes"].as_subclass(torch.Tensor), target["labels"]
    assert isinstance(masks, tv_tensors.Mask) and masks.dtype == torch.uint8
    assert masks.shape == (len(boxes), *image.shape[-2:]) and len(labels) == len(boxes)
    for i, (mask, box, label) in enumerate(zip(masks, boxes, labels.tolist())):
        got = mask_box(mask)
        where = f"instance {i} ({'rectangle' if label == RECT else 'ellipse'}): box {box.tolist()}, mask {got.tolist()}"
        if got.isnan().any():  # nothing left of the object: only where the box is under a pixel across
            assert mode == "contained" or float((box[2:] - box[:2]).min()) <= tol, where
            continue
        assert (got[:2] >= box[:2] - tol).all() and (got[2:] <= box[2:] + tol).all(), where
        if mode == "tight" and label == RECT:
            assert (got - box).abs().max() <= tol, where
    return len(boxes)


def run(transform: Callable, sample, partners, seed: int):
    torch.manual_seed(seed)
    if isinstance(transform, (Mosaic, MixUp)):
        return transform(sample, partners)
    return transform(*sample)


# name: (factory, mode); each ends with SanitizeBoundingBoxes where the presets follow it with one
SINGLE: dict[str, tuple[Callable[[], Any], str]] = {
    "hflip": (lambda: v2.RandomHorizontalFlip(p=1.0), "tight"),
    "vflip": (lambda: v2.RandomVerticalFlip(p=1.0), "tight"),
    "resize": (lambda: v2.Resize(48, max_size=80), "tight"),
    "resize_longer_side": (lambda: v2.Resize(size=None, max_size=64), "tight"),
    "square_resize": (lambda: v2.Resize((40, 56)), "tight"),
    "multi_scale": (lambda: v2.RandomShortestSize([32, 48, 64], max_size=100), "tight"),
    "scale_jitter": (lambda: v2.ScaleJitter((64, 64), scale_range=(0.5, 1.5)), "tight"),
    "rcnn_resize": (lambda: v2.Compose([Normalize(), RCNNResize([32, 48, 64], max_size=100, random_choice=True)]),
                    "tight"),
    "letterbox": (lambda: Letterbox(64), "tight"),
    "letterbox_corner": (lambda: Letterbox((48, 80), center=False, scale_up=False), "tight"),
    "zoom_out": (lambda: v2.RandomZoomOut(fill=image_fill([124, 116, 104]), side_range=(1.0, 3.0), p=1.0), "tight"),
    "iou_crop": (lambda: v2.Compose([v2.RandomIoUCrop(), v2.SanitizeBoundingBoxes(min_size=1.0)]), "tight"),
    "sanitize": (lambda: v2.SanitizeBoundingBoxes(min_size=12.0), "tight"),
    "affine_scale_translate": (lambda: RandomAffine(translate=0.2, scale=(0.5, 1.5), output_size=(56, 72)), "tight"),
    "affine_rotate_shear": (lambda: RandomAffine(degrees=30, translate=0.2, scale=(0.5, 1.5), shear=10,
                                                 output_size=64), "contained"),
    "tv_affine": (lambda: v2.Compose([v2.RandomAffine(degrees=20, translate=(0.1, 0.1), scale=(0.7, 1.3), shear=8),
                                      v2.SanitizeBoundingBoxes(min_size=1.0)]), "contained"),
    "mosaic": (lambda: Mosaic(40, grid=2), "tight"),
    "mosaic_3x3": (lambda: Mosaic(32, grid=3), "tight"),
    "mixup": (lambda: MixUp(prob=1.0), "tight"),
}
UNTOUCHED: dict[str, Callable[[], Any]] = {
    "hsv": lambda: HSVJitter(),
    "pca_lighting": lambda: PCALighting(),
    "noise": lambda: GaussianNoise(prob=1.0),
    "gridmask": lambda: GridMask(d1=8, d2=24, rotate=5, prob=1.0),
    "photometric_distort": lambda: v2.RandomPhotometricDistort(p=1.0),
    "normalize": lambda: Normalize(),
}


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_masks_follow_boxes_through_each_transform(name):
    factory, mode = SINGLE[name]
    transform = factory()
    partners_needed = getattr(transform, "num_partners", 0)
    checked = []

    @SETTINGS
    @given(sample=samples(), partners=st.lists(samples(), min_size=partners_needed, max_size=partners_needed),
           seed=st.integers(0, 2**31 - 1))
    def check(sample, partners, seed):
        image, target = run(transform, sample, partners, seed)
        checked.append(check_aligned(image, target, mode, tol=1.0))
        bare_image, bare = run(transform, without_masks(sample), [without_masks(p) for p in partners], seed)
        assert "masks" not in bare
        assert torch.equal(bare_image, image) and torch.equal(bare["labels"], target["labels"])
        assert torch.equal(bare["boxes"].as_subclass(torch.Tensor), target["boxes"].as_subclass(torch.Tensor))

    check()
    assert sum(checked) >= 10  # not vacuous: instances survive the transform


@pytest.mark.parametrize("name", sorted(UNTOUCHED))
def test_photometric_transforms_leave_masks_untouched(name):
    transform = UNTOUCHED[name]()

    @SETTINGS
    @given(sample=samples(max_side=48), seed=st.integers(0, 2**31 - 1))
    def check(sample, seed):
        image, target = run(transform, sample, [], seed)
        assert torch.equal(target["masks"], sample[1]["masks"]) and isinstance(target["masks"], tv_tensors.Mask)
        assert torch.equal(run(transform, without_masks(sample), [], seed)[0], image)

    check()


PRESETS = {"basic": 1.0, "gridmask": 1.0, "torchvision": 1.0, "ssd_style": 1.0, "yolo_style": 2.0,
           "mosaic_gridmask": 2.0}


@pytest.fixture(scope="module")
def presets() -> dict[str, Pipeline]:
    """Each preset's training pipeline at small sizes, with MixUp and GridMask always on."""
    out = {}
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for name in PRESETS:
            extra = {"yolo_style": ["pipeline.mixup.prob=1.0"],
                     "mosaic_gridmask": ["pipeline.mixup.prob=1.0", "pipeline.gridmask.ramp_epochs=0",
                                         "pipeline.gridmask.prob=1.0"],
                     "gridmask": ["pipeline.gridmask.ramp_epochs=0", "pipeline.gridmask.prob=1.0"]}.get(name, [])
            cfg = compose("train", [f"pipeline={name}", "dataset.min_size=48", "dataset.max_size=80",
                                    "dataset.img_size=64", *extra])
            pipeline = instantiate(cfg.pipeline.train)
            pipeline.set_epoch(0, 100)
            out[name] = pipeline
    return out


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_masks_follow_boxes_through_each_preset(presets, name):
    pipeline, tol = presets[name], PRESETS[name]
    checked = []

    @SETTINGS
    @given(data=st.lists(samples(), min_size=1, max_size=5), seed=st.integers(0, 2**31 - 1))
    def check(data, seed):
        torch.manual_seed(seed)
        image, target = pipeline.sample(0, lambda i: data[i], len(data))
        checked.append(check_aligned(image, target, "tight", tol))
        torch.manual_seed(seed)
        bare_image, bare = pipeline.sample(0, lambda i: without_masks(data[i]), len(data))
        assert torch.equal(bare_image, image) and torch.equal(bare["labels"], target["labels"])
        assert torch.equal(bare["boxes"].as_subclass(torch.Tensor), target["boxes"].as_subclass(torch.Tensor))

    check()
    assert sum(checked) >= 10


def test_a_mix_of_samples_with_and_without_masks_is_refused():
    image, target = _fixed_sample()
    with pytest.raises(ValueError, match="some of the samples it combines carry instance masks"):
        Mosaic(40)((image, target), [without_masks((image, target))] * 3)
    with pytest.raises(ValueError, match="with_masks"):
        MixUp()((image, target), [without_masks((image, target))])


def _fixed_sample():
    masks = torch.zeros((1, 30, 40), dtype=torch.uint8)
    masks[0, 5:15, 10:30] = 1
    return tv_tensors.Image(torch.zeros((3, 30, 40), dtype=torch.uint8)), {
        "boxes": tv_tensors.BoundingBoxes([[10.0, 5.0, 30.0, 15.0]], format="XYXY", canvas_size=(30, 40)),
        "labels": torch.tensor([0]), "masks": tv_tensors.Mask(masks), "image_id": 3}
