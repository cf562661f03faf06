"""Shapes images whose objects have known, distinct colours, and the check that boxes still cover them.

Each object is painted in one of the 8 corners of the RGB cube (at least 255 apart from each other and ~200 from
the grey background and the fill colours), and its label is the index of its colour. After a geometric transform,
the pixels of that colour belong to that object only, so they must lie inside its box.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision import tv_tensors

from framework.data.datasets.shapes import SHAPES_CLASSES, _draw_shape, _make_shape

COLOURS = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255],
                        [0, 0, 0], [255, 255, 255]], dtype=torch.float32)


def coloured_sample(seed: int, colours: list[int], h: int | None = None, w: int | None = None):
    """An (image, target) with one shape per colour index in `colours`, on a noisy grey background."""
    rng = np.random.default_rng(seed)
    h = h or int(rng.integers(100, 161))
    w = w or int(rng.integers(100, 161))
    bg = np.clip(128 + rng.normal(0, 6, size=(h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    for c in colours:
        shape = _make_shape(SHAPES_CLASSES[int(rng.integers(4))], rng, h, w, min(48, min(h, w) - 2))
        _draw_shape(draw, shape, tuple(int(v) for v in COLOURS[c]))
    image = tv_tensors.Image(torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous())
    # later shapes may hide earlier ones: each box is that of the pixels left in its colour (PIL paints exactly)
    boxes, labels = [], []
    for c in colours:
        ys, xs = torch.nonzero((image == COLOURS[c].to(torch.uint8)[:, None, None]).all(0), as_tuple=True)
        if len(xs):
            boxes.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
            labels.append(c)
    target = {"boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                                format="XYXY", canvas_size=(h, w)),
              "labels": torch.tensor(labels, dtype=torch.int64), "image_id": seed}
    return image, target


def check_boxes_cover_colours(image, target, tol: float = 1.0) -> int:
    """Assert boxes are inside the image and well-formed, and that every kept box (one per colour) contains all
    the pixels of its colour and at least some of them; returns the number of boxes checked."""
    boxes = target["boxes"].as_subclass(torch.Tensor)
    labels = target["labels"]
    h, w = image.shape[-2:]
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) == len(labels)
    assert torch.isfinite(boxes).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all(), boxes
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all(), (boxes, (h, w))
    assert len(set(labels.tolist())) == len(labels), "colours are unique per sample"
    pixels = image.as_subclass(torch.Tensor).float().permute(1, 2, 0)  # H, W, 3
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    for box, label in zip(boxes, labels):
        dist = (pixels - COLOURS[label]).norm(dim=-1)
        inside = (xs >= box[0] - tol) & (xs <= box[2] + tol) & (ys >= box[1] - tol) & (ys <= box[3] + tol)
        pure = dist < 80
        assert not (pure & ~inside).any(), f"pixels of colour {label} outside its box {box.tolist()}"
        if min(box[2] - box[0], box[3] - box[1]) >= 4:  # thinner slivers may be blended away by antialiasing
            assert (dist[inside] < 150).any(), f"box {box.tolist()} of colour {label} holds none of its pixels"
    return len(boxes)
