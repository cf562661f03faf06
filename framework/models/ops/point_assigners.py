"""FCOS target assignment for the whole batch at once.

torchvision's FCOS matches points to boxes image by image in a Python loop; here the ground truth is padded to
`[B, M]` and one `[B, M, P]` mask decides every point of every image.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from framework.models.ops.assigners import NEGATIVE


def default_regress_ranges(strides: Sequence[int], lower: float = 4.0, upper: float = 8.0) -> list[tuple[float, float]]:
    """FCOS's size ranges per level: (lower·s, upper·s), open-ended at both ends ((0, 64), (64, 128), …, (512, ∞))."""
    ranges = [(lower * s, upper * s) for s in strides]
    ranges[0] = (0.0, ranges[0][1])
    ranges[-1] = (ranges[-1][0], float("inf"))
    return ranges


class CenterSamplingAssigner:
    """A point is positive for a box when it lies inside the box, within `radius` strides of its centre (when
    `center_sampling`), and the box's largest distance to it falls in the point's level range; among several such
    boxes it takes the smallest (by area). Strict inequalities as in torchvision's FCOS.
    """

    def __init__(self, center_sampling: bool = True, radius: float = 1.5) -> None:
        self.center_sampling, self.radius = center_sampling, radius

    def assign(self, points: Tensor, point_strides: Tensor, point_ranges: Tensor, gt_boxes: Tensor,
               gt_valid: Tensor) -> Tensor:
        """`points` [P, 2], `point_strides` [P], `point_ranges` [P, 2]; gt `[B, M, 4]` + `[B, M]` valid.

        Returns `[B, P]` int64: the matched box index in `[0, M)`, or NEGATIVE (-1)."""
        batch, num_points = gt_boxes.shape[0], points.shape[0]
        if gt_boxes.shape[1] == 0:
            return torch.full((batch, num_points), NEGATIVE, dtype=torch.long, device=points.device)
        x, y = points[:, 0], points[:, 1]  # [P]
        x0, y0, x1, y1 = (gt_boxes[..., i, None] for i in range(4))  # [B, M, 1]
        ltrb = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=-1)  # [B, M, P, 4]
        match = (ltrb.min(dim=-1).values > 0) & gt_valid[..., None]
        if self.center_sampling:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            dist = torch.maximum((x - cx).abs(), (y - cy).abs())  # [B, M, P]
            match &= dist < self.radius * point_strides
        reach = ltrb.max(dim=-1).values
        match &= (reach > point_ranges[:, 0]) & (reach < point_ranges[:, 1])
        area = ((x1 - x0) * (y1 - y0)).expand_as(reach)
        area = torch.where(match, area, torch.full_like(area, float("inf")))
        min_area, idx = area.min(dim=1)  # [B, P]
        return torch.where(torch.isfinite(min_area), idx, torch.full_like(idx, NEGATIVE))
