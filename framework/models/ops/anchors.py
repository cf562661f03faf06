"""Anchor boxes for every level of a feature pyramid.

torchvision's `AnchorGenerator` works on an `ImageList` and returns one tensor per image; heads here compute
losses for the whole batch at once, so one anchor set for the padded batch shape is what they need.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


class AnchorGenerator:
    """RetinaNet-style anchors: on level l, sizes `stride * octave_base_scale * 2**(i / scales_per_octave)` for
    each ratio (h/w), centred at `(x + center_offset) * stride`.

    Anchors are ordered level by level, then row, column, anchor — the order in which heads flatten their outputs.
    """

    def __init__(
        self,
        strides: Sequence[int],
        octave_base_scale: float = 4.0,
        scales_per_octave: int = 3,
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        center_offset: float = 0.5,
    ) -> None:
        self.strides = [int(s) for s in strides]
        self.center_offset = center_offset
        scales = torch.tensor([octave_base_scale * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)])
        ratios_t = torch.tensor([float(r) for r in ratios])
        h_ratio, w_ratio = ratios_t.sqrt(), 1.0 / ratios_t.sqrt()
        self.base_anchors: list[Tensor] = []
        for stride in self.strides:
            ws = (stride * scales[None, :] * w_ratio[:, None]).reshape(-1)
            hs = (stride * scales[None, :] * h_ratio[:, None]).reshape(-1)
            self.base_anchors.append(torch.stack([-ws / 2, -hs / 2, ws / 2, hs / 2], dim=1))
        self.num_base_anchors = len(ratios_t) * scales_per_octave
        self._cache: dict[tuple, Tensor] = {}

    def grid_anchors(self, feature_sizes: Sequence[tuple[int, int]], device: torch.device) -> Tensor:
        """All anchors [A, 4] (XYXY, input pixels) for the given per-level feature sizes; cached per shape."""
        key = (tuple(tuple(s) for s in feature_sizes), str(device))
        if key not in self._cache:
            if len(self._cache) > 32:  # multi-scale training sees a bounded set of shapes; don't grow forever
                self._cache.clear()
            per_level = []
            for (h, w), stride, base in zip(feature_sizes, self.strides, self.base_anchors):
                ys = (torch.arange(h, dtype=torch.float32) + self.center_offset) * stride
                xs = (torch.arange(w, dtype=torch.float32) + self.center_offset) * stride
                cy, cx = torch.meshgrid(ys, xs, indexing="ij")
                centers = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)
                per_level.append((centers + base[None]).reshape(-1, 4))
            self._cache[key] = torch.cat(per_level).to(device)
        return self._cache[key]


__all__ = ["AnchorGenerator"]
