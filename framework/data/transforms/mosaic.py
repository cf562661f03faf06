"""Mosaic (YOLOv4): four (or nine) images tiled around a random centre on one 2s × 2s canvas.

Written here because torchvision has no multi-image transform. Each object is seen at its own scale in a new
context and next to cut-off objects, and a batch holds four times as many images' worth of objects. Follow it
with `RandomAffine(output_size=s)`, which crops the canvas to the output size around its centre (with scale
jitter), as the YOLO recipes do.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from framework.data.transforms.boxes import clip_boxes, fill_value, keep_boxes, make_target, mask_presence, source_ids
from framework.data.transforms.pipeline import MixTransform, Sample


class Mosaic(MixTransform):
    """Tile the sample and `grid² − 1` partners on a `2·size` square canvas.

    Args:
        size: the output size `s` the pipeline trains at; partners should already be resized so that their
            longer side is `s` (a `Resize(size=None, max_size=s)` before Mosaic).
        grid: 2 (four images around a random centre) or 3 (nine images on a 3s canvas, of which a random 2s
            window is kept).
        prob: chance per sample.
        center_range: the centre is drawn in `[lo·s, hi·s]` on each axis of the 2s canvas.
        fill: canvas colour where no image lands, in 0–255 units (114: the YOLO grey).
        min_size, min_area_ratio, max_aspect_ratio: boxes cut by the canvas edge are dropped when a side is
            below `min_size` px, less than `min_area_ratio` of the box is left, or the aspect exceeds the limit.
    """

    def __init__(self, size: int = 640, grid: int = 2, prob: float = 1.0,
                 center_range: Sequence[float] = (0.5, 1.5), fill: float | Sequence[float] = 114,
                 min_size: float = 2.0, min_area_ratio: float = 0.1, max_aspect_ratio: float = 20.0) -> None:
        if grid not in (2, 3):
            raise ValueError(f"Mosaic: grid must be 2 (4 images) or 3 (9 images), got {grid}")
        if size < 2:
            raise ValueError(f"Mosaic: size must be >= 2, got {size}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"Mosaic: prob must be in [0, 1], got {prob}")
        lo, hi = (float(c) for c in center_range)
        if not 0.0 <= lo <= hi <= 2.0:
            raise ValueError(f"Mosaic: center_range must satisfy 0 <= lo <= hi <= 2, got {center_range}")
        self.size, self.grid, self.prob, self.center_range = int(size), int(grid), float(prob), (lo, hi)
        self.fill = fill
        self.min_size, self.min_area_ratio, self.max_aspect_ratio = min_size, min_area_ratio, max_aspect_ratio
        self.num_partners = grid * grid - 1

    def _offsets(self, shapes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Top-left corner of each tile on the 2s canvas (may be negative: the tile is then cut)."""
        s = self.size
        lo, hi = self.center_range
        u = torch.rand(2) * (hi - lo) + lo
        cx, cy = int(u[0] * s), int(u[1] * s)
        if self.grid == 2:  # the tiles meet at the centre: top-left, top-right, bottom-left, bottom-right
            (h0, w0), (h1, w1), (h2, w2), _ = shapes
            return [(cx - w0, cy - h0), (cx, cy - h1), (cx - w2, cy), (cx, cy)]
        # 3×3 cells of side s on a 3s canvas, each image pushed towards the centre cell; the 2s window kept is
        # centred at (s/2 + cx, s/2 + cy), i.e. anywhere between s and 2s for the default range
        offsets = []
        for k, (h, w) in enumerate(shapes):
            row, col = divmod((k + 4) % 9, 3)  # the sample itself in the centre cell
            align = (lambda cell, side: cell * s + (s - side if cell == 0 else (s - side) // 2 if cell == 1 else 0))
            offsets.append((align(col, w) - cx + s // 2, align(row, h) - cy + s // 2))
        return offsets

    def _fit(self, sample: Sample) -> Sample:
        """Tiles larger than s are shrunk to a longer side of s, so no tile covers another one's objects."""
        image, target = sample
        h, w = int(image.shape[-2]), int(image.shape[-1])
        if max(h, w) <= self.size:
            return sample
        image = F.resize(image, size=None, max_size=self.size)
        size = [int(image.shape[-2]), int(image.shape[-1])]  # boxes and masks at the image's own (truncated) size
        fitted = dict(target, boxes=F.resize(target["boxes"], size))
        if "masks" in target:
            fitted["masks"] = F.resize(target["masks"], size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
        return image, fitted

    def __call__(self, sample: Sample, partners: list[Sample]) -> Sample:
        samples = [self._fit(s) for s in (sample, *partners)]
        with_masks = mask_presence(samples, "Mosaic")
        image = samples[0][0]
        canvas_side = 2 * self.size
        shapes = [(int(img.shape[-2]), int(img.shape[-1])) for img, _ in samples]
        canvas = fill_value(self.fill, image).expand(image.shape[-3], canvas_side, canvas_side).clone()
        boxes, labels, kept, windows = [], [], [], []
        for (img, target), (h, w), (ox, oy) in zip(samples, shapes, self._offsets(shapes)):
            x0, y0 = max(ox, 0), max(oy, 0)
            x1, y1 = min(ox + w, canvas_side), min(oy + h, canvas_side)
            if x1 > x0 and y1 > y0:
                canvas[:, y0:y1, x0:x1] = img[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
            shifted = target["boxes"].as_subclass(Tensor).reshape(-1, 4) + torch.tensor([ox, oy, ox, oy])
            clipped = clip_boxes(shifted, canvas_side, canvas_side)
            keep = keep_boxes(shifted, clipped, self.min_size, self.min_area_ratio, self.max_aspect_ratio)
            boxes.append(clipped[keep])
            labels.append(target["labels"][keep])
            kept.append(keep)
            windows.append((ox, oy, x0, y0, x1, y1))
        masks = None
        if with_masks:  # one canvas-sized allocation for all tiles' kept instances, filled tile by tile
            count = sum(int(k.sum()) for k in kept)
            masks = samples[0][1]["masks"].as_subclass(Tensor).new_zeros((count, canvas_side, canvas_side))
            start = 0
            for (_, target), keep, (ox, oy, x0, y0, x1, y1) in zip(samples, kept, windows):
                n = int(keep.sum())
                if n and x1 > x0 and y1 > y0:
                    m = target["masks"].as_subclass(Tensor)[keep]
                    masks[start:start + n, y0:y1, x0:x1] = m[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
                start += n
        ids: list[Any] = [i for _, t in samples for i in source_ids(t)]
        target = make_target(samples[0][1], torch.cat(boxes), torch.cat(labels), (canvas_side, canvas_side), masks,
                             ids)
        return tv_tensors.Image(canvas), target

    def __repr__(self) -> str:
        return f"Mosaic(size={self.size}, grid={self.grid}, prob={self.prob}, center_range={self.center_range})"
