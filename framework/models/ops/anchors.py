"""Anchor boxes and anchor points for every level of a feature pyramid.

torchvision's `AnchorGenerator` works on an `ImageList` and returns one tensor per image; heads here compute
losses for the whole batch at once, so one prior set for the padded batch shape is what they need.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def _level_strides(feature_sizes: Sequence[tuple[int, int]], strides: Sequence[int], torchvision_style: bool
                   ) -> list[int | tuple[int, int]]:
    """Nominal strides, or torchvision's: padded input size // feature size per axis, where the input size is
    read off the first level (`h0 * stride0`). They differ on coarse levels when the padded input is not a multiple
    of their stride (800 px → P7 has 7 rows → torchvision spaces them 114 px apart, not 128)."""
    if not torchvision_style:
        return list(strides)
    in_h, in_w = feature_sizes[0][0] * strides[0], feature_sizes[0][1] * strides[0]
    return [(in_h // h, in_w // w) for h, w in feature_sizes]


def _grid_centers(h: int, w: int, stride: int | tuple[int, int], offset: float) -> Tensor:
    """Centres `[h*w, 2]` (x, y) of a level's cells, row-major, at `(i + offset) * stride` (stride: one value or
    (stride_y, stride_x))."""
    sy, sx = stride if isinstance(stride, tuple) else (stride, stride)
    ys = (torch.arange(h, dtype=torch.float32) + offset) * sy
    xs = (torch.arange(w, dtype=torch.float32) + offset) * sx
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([cx, cy], dim=-1).reshape(-1, 2)


class _ShapeCache:
    """Priors depend only on the feature sizes; cache them per shape (a bounded set, even with multi-scale)."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Tensor | tuple[Tensor, ...]] = {}

    def get(self, key: tuple, build):  # noqa: ANN001, ANN201 - a tiny memo helper
        if key not in self._cache:
            if len(self._cache) > 32:
                self._cache.clear()
            self._cache[key] = build()
        return self._cache[key]


class AnchorGenerator:
    """Anchors of every ratio (h/w) and size at every cell, level by level, then row, column, anchor — the order in
    which heads flatten their outputs.

    Sizes are either RetinaNet's octave scales, `stride * octave_base_scale * 2**(i / scales_per_octave)`, or given
    per level (`sizes=[[32, 40, 50], …]`). `center_offset=0.5` centres anchors in their cell (mmdetection ≥ 2).
    `torchvision_style=True` reproduces torchvision's anchors exactly — rounded base anchors, cell corners as
    centres (offset 0) and strides derived from the padded input size — which the torchvision-equivalent configs
    set so that converted weights see the anchors they were trained with.
    """

    def __init__(
        self,
        strides: Sequence[int],
        octave_base_scale: float = 4.0,
        scales_per_octave: int = 3,
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        center_offset: float = 0.5,
        sizes: Sequence[Sequence[float]] | None = None,
        torchvision_style: bool = False,
    ) -> None:
        self.strides = [int(s) for s in strides]
        self.torchvision_style = torchvision_style
        self.center_offset = 0.0 if torchvision_style else center_offset
        ratios_t = torch.tensor([float(r) for r in ratios])
        h_ratio = ratios_t.sqrt()
        w_ratio = 1.0 / h_ratio
        if sizes is not None:
            if len(sizes) != len(self.strides):
                raise ValueError(f"anchor sizes are given for {len(sizes)} levels but there are {len(self.strides)} "
                                 f"(strides {self.strides})")
            per_level = [torch.tensor([float(s) for s in level]) for level in sizes]
            if len({len(s) for s in per_level}) != 1:
                raise ValueError(f"every level needs the same number of anchor sizes, got {sizes}")
        else:
            scales = torch.tensor([octave_base_scale * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)])
            per_level = [stride * scales for stride in self.strides]
        self.base_anchors: list[Tensor] = []
        for level_sizes in per_level:
            ws = (w_ratio[:, None] * level_sizes[None, :]).reshape(-1)
            hs = (h_ratio[:, None] * level_sizes[None, :]).reshape(-1)
            base = torch.stack([-ws, -hs, ws, hs], dim=1) / 2
            self.base_anchors.append(base.round() if torchvision_style else base)
        self.num_base_anchors = len(ratios_t) * len(per_level[0])
        self._cache = _ShapeCache()

    def grid_anchors(self, feature_sizes: Sequence[tuple[int, int]], device: torch.device) -> Tensor:
        """All anchors [A, 4] (XYXY, input pixels) for the given per-level feature sizes; cached per shape."""
        return self._cache.get((tuple(tuple(s) for s in feature_sizes), str(device)),
                               lambda: self.compute(feature_sizes, device))

    def compute(self, feature_sizes: Sequence[tuple[int, int]], device: torch.device) -> Tensor:
        """`grid_anchors` without the cache: plain tensor ops on the sizes, so `torch.export` records them in the
        graph when the sizes are symbolic (an ONNX export with dynamic image size, `framework/export.py`)."""
        per_level = []
        strides = _level_strides(feature_sizes, self.strides, self.torchvision_style)
        for (h, w), stride, base in zip(feature_sizes, strides, self.base_anchors):
            centers = _grid_centers(h, w, stride, self.center_offset).repeat(1, 2).reshape(-1, 1, 4)
            per_level.append((centers + base[None]).reshape(-1, 4))
        return torch.cat(per_level).to(device)


class PointGenerator:
    """One point per cell for anchor-free heads (FCOS, YOLO): centres `[P, 2]` and the stride of each `[P]`.

    `offset=0.5` puts points at cell centres (YOLOv8, mmdetection); `torchvision_style=True` reproduces torchvision's
    FCOS points (offset 0, positions spaced by input size // feature size, see `AnchorGenerator`); the returned
    per-point stride stays the nominal one, which is what torchvision normalizes regression by.
    """

    def __init__(self, strides: Sequence[int], offset: float = 0.5, torchvision_style: bool = False) -> None:
        self.strides = [int(s) for s in strides]
        self.torchvision_style = torchvision_style
        self.offset = 0.0 if torchvision_style else offset
        self._cache = _ShapeCache()

    def grid_points(self, feature_sizes: Sequence[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor]:
        return self._cache.get((tuple(tuple(s) for s in feature_sizes), str(device)),
                               lambda: self.compute(feature_sizes, device))

    def compute(self, feature_sizes: Sequence[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor]:
        """`grid_points` without the cache (traceable with symbolic sizes, see `AnchorGenerator.compute`)."""
        pts, strides = [], []
        spacing = _level_strides(feature_sizes, self.strides, self.torchvision_style)
        for (h, w), stride, step in zip(feature_sizes, self.strides, spacing):
            pts.append(_grid_centers(h, w, step, self.offset))
            strides.append(torch.full((h * w,), float(stride)))
        return torch.cat(pts).to(device), torch.cat(strides).to(device)


__all__ = ["AnchorGenerator", "PointGenerator"]
