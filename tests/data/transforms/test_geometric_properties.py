"""Seeded sweeps over every geometric transform we ship or configure: boxes stay inside the image, are
well-formed, and still cover the pixels of the object they label (objects painted in known colours)."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from framework.data.transforms import Letterbox, MixUp, Mosaic, Pipeline, RandomAffine
from tests.data.transforms.coloured import check_boxes_cover_colours, coloured_sample

SINGLE = {
    "resize": lambda: v2.Resize(128, max_size=192),
    "resize_longer_side": lambda: v2.Resize(size=None, max_size=160),
    "square_resize": lambda: v2.Resize((160, 160)),
    "multi_scale": lambda: v2.RandomShortestSize([96, 112, 128, 144], max_size=200),
    "random_resize": lambda: v2.RandomResize(80, 200),
    "scale_jitter": lambda: v2.ScaleJitter((128, 128), scale_range=(0.3, 2.0)),
    "iou_crop": lambda: v2.RandomIoUCrop(),
    "zoom_out": lambda: v2.RandomZoomOut(fill=[124, 116, 104], side_range=(1.0, 3.0), p=1.0),
    "hflip": lambda: v2.RandomHorizontalFlip(p=1.0),
    "vflip": lambda: v2.RandomVerticalFlip(p=1.0),
    "tv_affine": lambda: v2.RandomAffine(degrees=20, translate=(0.1, 0.1), scale=(0.7, 1.3), shear=8),
    "affine": lambda: RandomAffine(degrees=20, translate=0.2, scale=(0.5, 1.5), shear=8, output_size=128),
    "affine_same_size": lambda: RandomAffine(degrees=0, translate=0.1, scale=(0.8, 1.2)),
    "letterbox": lambda: Letterbox(128),
    "letterbox_corner": lambda: Letterbox((96, 160), center=False, scale_up=False),
}
SEEDS = range(12)


def then_sanitize(t):
    # every preset ends with SanitizeBoundingBoxes (it drops the boxes a crop or a warp emptied)
    return v2.Compose([t, v2.SanitizeBoundingBoxes(min_size=1.0)])


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_single_image_transform_keeps_boxes_on_their_objects(name):
    transform = then_sanitize(SINGLE[name]())
    checked = 0
    for seed in SEEDS:
        image, target = coloured_sample(seed, colours=[0, 1, 2, 3])
        torch.manual_seed(seed)
        out, out_target = transform(image, target)
        checked += check_boxes_cover_colours(out, out_target)
    assert checked >= len(SEEDS)  # most objects survive: the sweep is not vacuous


def mosaic_pipeline(grid: int, with_affine: bool) -> Pipeline:
    steps = [v2.Resize(size=None, max_size=96), Mosaic(96, grid=grid, min_area_ratio=0.0)]
    if with_affine:
        steps.append(RandomAffine(degrees=10, translate=0.1, scale=(0.5, 1.5), shear=5, output_size=96,
                                  min_area_ratio=0.0))
    return Pipeline([*steps, v2.SanitizeBoundingBoxes(min_size=1.0)])


@pytest.mark.parametrize("grid,with_affine", [(2, False), (2, True), (3, False), (3, True)])
def test_mosaic_keeps_boxes_on_their_objects(grid, with_affine):
    """Each tile has its own colours (8 colours: two objects per tile of a 2×2 mosaic, one per tile of 3×3), so
    colours stay unique in the canvas."""
    pipeline = mosaic_pipeline(grid, with_affine)
    per_tile = 2 if grid == 2 else 1
    tiles = grid * grid
    checked = 0
    for seed in SEEDS:
        calls = iter(range(tiles))

        def load(index: int, seed=seed):
            # whatever index is drawn, the k-th image loaded is tile k with its own colours
            k = next(calls)
            colours = [c for c in range(k * per_tile, (k + 1) * per_tile) if c < 8]
            return coloured_sample(1000 * seed + k, colours)

        torch.manual_seed(seed)
        image, target = pipeline.sample(0, load, length=tiles)
        assert image.shape[-2:] == ((96, 96) if with_affine else (192, 192))
        assert len(target["source_ids"]) == tiles
        checked += check_boxes_cover_colours(image, target)
    assert checked >= len(SEEDS)


def test_mixup_partner_boxes_cover_the_partner_objects():
    """On a black image, MixUp with r ≈ 0.5 leaves half the partner's colours: doubled, the colour check holds."""
    black = coloured_sample(0, colours=[], h=120, w=150)
    black[0].zero_()
    for seed in SEEDS:
        partner = coloured_sample(seed, colours=[0, 1, 2, 3])
        torch.manual_seed(seed)
        image, target = MixUp(alpha=1e6, scale_range=(0.6, 1.6), min_area_ratio=0.0)(black, [partner])
        assert image.shape[-2:] == (120, 150)
        doubled = (image.as_subclass(torch.Tensor).float() * 2).clamp(0, 255)
        check_boxes_cover_colours(doubled, target)
        assert target["source_ids"] == [0, seed]
