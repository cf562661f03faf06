"""Small hand-built samples for the transform tests."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torchvision import tv_tensors


def make_sample(image: torch.Tensor, boxes: Sequence[Sequence[float]], labels: torch.Tensor | None = None,
                masks: bool = False, **extra: Any):
    """(Image, target) with XYXY `boxes`; with `masks`, one rectangular instance mask per box."""
    h, w = image.shape[-2:]
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    target = {"boxes": tv_tensors.BoundingBoxes(b, format="XYXY", canvas_size=(h, w)),
              "labels": torch.arange(len(b)) if labels is None else labels, **extra}
    if masks:
        m = torch.zeros((len(b), h, w), dtype=torch.uint8)
        for i, (x0, y0, x1, y1) in enumerate(b.int().tolist()):
            m[i, y0:y1, x0:x1] = 1
        target["masks"] = tv_tensors.Mask(m)
    return tv_tensors.Image(image), target
