"""Delta encoding of boxes relative to anchors, on tensors of any leading shape.

torchvision's `BoxCoder` takes lists of per-image tensors; this one works on `[..., 4]` so a head can encode and
decode the whole batch in one call.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


class DeltaBoxCoder:
    """(dx, dy, dw, dh) = ((gx - ax) / aw * w0, (gy - ay) / ah * w1, log(gw / aw) * w2, log(gh / ah) * w3)."""

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), clip: float = math.log(1000.0 / 16)) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.clip = clip

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        wx, wy, ww, wh = self.weights
        aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
        ax, ay = anchors[..., 0] + 0.5 * aw, anchors[..., 1] + 0.5 * ah
        gw, gh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        gx, gy = boxes[..., 0] + 0.5 * gw, boxes[..., 1] + 0.5 * gh
        eps = torch.finfo(boxes.dtype).eps
        return torch.stack(
            [wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * torch.log(gw.clamp(min=eps) / aw),
             wh * torch.log(gh.clamp(min=eps) / ah)],
            dim=-1,
        )

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        wx, wy, ww, wh = self.weights
        aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
        ax, ay = anchors[..., 0] + 0.5 * aw, anchors[..., 1] + 0.5 * ah
        dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
        dw, dh = (deltas[..., 2] / ww).clamp(max=self.clip), (deltas[..., 3] / wh).clamp(max=self.clip)
        cx, cy = ax + dx * aw, ay + dy * ah
        w, h = aw * torch.exp(dw), ah * torch.exp(dh)
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


class DistanceBoxCoder:
    """Boxes as distances (left, top, right, bottom) from a point, divided by `scale` (the level's stride when
    `normalize=True`), as FCOS and the YOLOv8-style head regress them; torchvision's `BoxLinearCoder` with
    `normalize_by_size=True` is the same transform with the anchor size (= stride) as scale."""

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize

    def encode(self, boxes: Tensor, points: Tensor, scale: Tensor | None = None) -> Tensor:
        ltrb = torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1)
        return ltrb / scale[..., None] if self.normalize and scale is not None else ltrb

    def decode(self, distances: Tensor, points: Tensor, scale: Tensor | None = None) -> Tensor:
        if self.normalize and scale is not None:
            distances = distances * scale[..., None]
        return torch.cat([points - distances[..., :2], points + distances[..., 2:]], dim=-1)
