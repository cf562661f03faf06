"""Random affine warp to a fixed output size, with the box filter of the YOLO recipes.

Written here because torchvision's `RandomAffine` keeps the canvas size (it cannot take a 2s mosaic to s) and
keeps every box that still has a pixel in the image. This one maps the input centre to the output centre
(plus a random translation), so on a mosaic it crops the middle of the canvas, and on a plain image it centres
it, as mmdetection's and ultralytics' random affine/perspective do. Boxes are the enclosing boxes of their
transformed corners (loose under rotation, never cutting the object); boxes left mostly outside are dropped.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as nnf
from torch import Tensor
from torchvision import tv_tensors

from framework.data.transforms.boxes import clip_boxes, fill_value, keep_boxes, make_target


def _size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def warp(image: Tensor, inverse: Tensor, out_h: int, out_w: int, mode: str, fill: Tensor | float) -> Tensor:
    """Sample `image` (C, H, W) at `inverse @ (x, y, 1)` for every output pixel centre (pixel i spans [i, i+1]).

    Only the part of the input the output can see is converted and sampled: on a 2s mosaic warped to s at scale 1
    that is a quarter of the canvas."""
    h, w = image.shape[-2:]
    a = inverse[:2].double()
    corners = torch.tensor([[0.0, 0.0, 1.0], [out_w, 0.0, 1.0], [0.0, out_h, 1.0], [out_w, out_h, 1.0]],
                           dtype=torch.float64) @ a.T
    fill_t = torch.as_tensor(fill, dtype=torch.float32).reshape(-1, 1, 1)
    # a 2-pixel margin: bilinear sampling near the crop edge must still see the real neighbours
    x0, y0 = (max(int(math.floor(float(v))) - 2, 0) for v in corners.amin(0)[:2])
    x1, y1 = min(int(math.ceil(float(corners[:, 0].max()))) + 2, w), min(int(math.ceil(float(corners[:, 1].max()))) + 2, h)
    if x1 <= x0 or y1 <= y0:  # the output sees none of the input
        out = fill_t.expand(image.shape[-3], out_h, out_w).clone()
    else:
        crop = image[..., y0:y1, x0:x1]
        ch, cw = y1 - y0, x1 - x0
        # theta maps output to input coordinates normalized as affine_grid/grid_sample see them (pixel centres)
        to_pixels = torch.tensor([[out_w / 2, 0, out_w / 2], [0, out_h / 2, out_h / 2], [0, 0, 1]], dtype=torch.float64)
        to_unit = torch.tensor([[2 / cw, 0, -1 - 2 * x0 / cw], [0, 2 / ch, -1 - 2 * y0 / ch], [0, 0, 1]],
                               dtype=torch.float64)
        t = (to_unit @ inverse.double() @ to_pixels)[:2].float()
        # affine_grid's own (a batched matmul over every pixel) is slower than two broadcast sums per coordinate
        xs = torch.linspace(-1 + 1 / out_w, 1 - 1 / out_w, out_w)
        ys = torch.linspace(-1 + 1 / out_h, 1 - 1 / out_h, out_h)
        grid = torch.empty(1, out_h, out_w, 2)
        torch.add((t[0, 0] * xs)[None, :], (t[0, 1] * ys + t[0, 2])[:, None], out=grid[0, ..., 0])
        torch.add((t[1, 0] * xs)[None, :], (t[1, 1] * ys + t[1, 2])[:, None], out=grid[0, ..., 1])
        out = nnf.grid_sample((crop.float() - fill_t)[None], grid, mode=mode, padding_mode="zeros",
                              align_corners=False)[0] + fill_t
    if image.is_floating_point():
        return out.to(image.dtype)
    if image.dtype == torch.bool:
        return out > 0.5
    return out.round_().clamp_(0, torch.iinfo(image.dtype).max).to(image.dtype)


def warp_masks(masks: Tensor, inverse: Tensor, out_h: int, out_w: int, rows: Tensor | None = None) -> Tensor:
    """Nearest-neighbour warp of the instance masks `rows` (all when None) of (N, H, W) masks, any dtype, to
    (len(rows), out_h, out_w) in the same dtype.

    Each output pixel takes the input pixel that contains `inverse @ (its centre)`, the pixel-centre rule the image
    warp and the boxes follow, so a mask stays on its box. Written as one gather per mask with shared indices rather
    than `grid_sample`, and without first copying out the kept rows: a mosaic of 400 instances on a 1280² canvas
    is 655 MB as uint8 (2.6 GB as float), and the output is the only other N-sized allocation."""
    n, h, w = masks.shape
    a = inverse[:2].double()
    xs = torch.arange(out_w, dtype=torch.float64) + 0.5
    ys = torch.arange(out_h, dtype=torch.float64)[:, None] + 0.5
    sx = (a[0, 0] * xs + (a[0, 1] * ys + a[0, 2])).floor_()
    sy = (a[1, 0] * xs + (a[1, 1] * ys + a[1, 2])).floor_()
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    index = torch.where(inside, sy * w + sx, torch.zeros((), dtype=torch.float64)).long().reshape(-1)
    flat = masks.reshape(n, h * w)
    rows_list = list(range(n)) if rows is None else rows.tolist()
    out = masks.new_empty((len(rows_list), out_h * out_w))
    for j, r in enumerate(rows_list):
        torch.index_select(flat[r], 0, index, out=out[j])
    out = out.view(len(rows_list), out_h, out_w)
    return out.mul_(inside.to(masks.dtype)) if masks.dtype != torch.bool else out.logical_and_(inside)


class RandomAffine(torch.nn.Module):
    """Rotate, scale, shear and translate to `output_size`, keeping the boxes that are still there.

    Args:
        degrees: rotation drawn from [−degrees, degrees].
        translate: translation drawn from [−translate, translate] × output side.
        scale: scale factor drawn from this range.
        shear: shear angles (x and y) drawn from [−shear, shear] degrees.
        output_size: (h, w) or one side of the output; None keeps the input size.
        fill: colour outside the input, 0–255 units.
        prob: chance per sample (when not applied, an input of another size is still centred on the output).
        min_size, min_area_ratio, max_aspect_ratio: drop boxes with a side under `min_size` px, with less than
            `min_area_ratio` of their transformed area left in the image, or with a larger aspect ratio.
    """

    def __init__(self, degrees: float = 0.0, translate: float = 0.1, scale: Sequence[float] = (0.5, 1.5),
                 shear: float = 0.0, output_size: int | Sequence[int] | None = None,
                 fill: float | Sequence[float] = 114, prob: float = 1.0, min_size: float = 2.0,
                 min_area_ratio: float = 0.1, max_aspect_ratio: float = 20.0) -> None:
        super().__init__()
        lo, hi = (float(v) for v in scale)
        if not 0.0 < lo <= hi:
            raise ValueError(f"RandomAffine: scale must satisfy 0 < lo <= hi, got {scale}")
        if degrees < 0 or shear < 0 or not 0.0 <= translate <= 1.0:
            raise ValueError(f"RandomAffine: need degrees >= 0, shear >= 0, 0 <= translate <= 1; got {degrees}, "
                             f"{shear}, {translate}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomAffine: prob must be in [0, 1], got {prob}")
        self.degrees, self.translate, self.scale, self.shear = float(degrees), float(translate), (lo, hi), float(shear)
        self.output_size, self.fill, self.prob = _size(output_size), fill, float(prob)
        self.min_size, self.min_area_ratio, self.max_aspect_ratio = min_size, min_area_ratio, max_aspect_ratio

    def matrix(self, in_h: int, in_w: int, out_h: int, out_w: int, u: Tensor | None = None) -> tuple[Tensor, float]:
        """A random forward matrix (3×3, input → output pixels) and its scale factor; `u` are the seven uniform
        draws (apply?, angle, scale, shear x, shear y, translate x, translate y), drawn here when not given."""
        u = torch.rand(7) if u is None else u
        if float(u[0]) >= self.prob:
            u = torch.tensor([0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])  # identity apart from centring
            scale = 1.0
        else:
            scale = self.scale[0] + (self.scale[1] - self.scale[0]) * float(u[2])
        angle = math.radians(self.degrees * (2 * float(u[1]) - 1))
        shx, shy = (math.tan(math.radians(self.shear * (2 * float(v) - 1))) for v in u[3:5])
        tx, ty = (self.translate * (2 * float(v) - 1) for v in u[5:7])
        centre = torch.tensor([[1.0, 0, -in_w / 2], [0, 1.0, -in_h / 2], [0, 0, 1.0]], dtype=torch.float64)
        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        rotate = torch.tensor([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1.0]], dtype=torch.float64)
        shear = torch.tensor([[1.0, shx, 0], [shy, 1.0, 0], [0, 0, 1.0]], dtype=torch.float64)
        move = torch.tensor([[1.0, 0, out_w * (0.5 + tx)], [0, 1.0, out_h * (0.5 + ty)], [0, 0, 1.0]],
                            dtype=torch.float64)
        return move @ shear @ rotate @ centre, scale

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        in_h, in_w = int(image.shape[-2]), int(image.shape[-1])
        out_h, out_w = self.output_size or (in_h, in_w)
        return self.apply(image, target, *self.matrix(in_h, in_w, out_h, out_w), (out_h, out_w))

    def apply(self, image: Any, target: dict[str, Any], m: Tensor, scale: float,
              out_size: tuple[int, int]) -> tuple[Any, dict[str, Any]]:
        """Warp the sample with the forward matrix `m` (scale factor `scale`) to `out_size`."""
        out_h, out_w = out_size
        inverse = torch.linalg.inv(m)
        plain = image.as_subclass(Tensor)
        out = warp(plain, inverse, out_h, out_w, "bilinear", fill_value(self.fill, plain).float())

        boxes = target["boxes"].as_subclass(Tensor).reshape(-1, 4).double()
        x0, y0, x1, y1 = boxes.unbind(1)
        corners = torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1), torch.stack([x0, y1], 1),
                               torch.stack([x1, y1], 1)], 1)  # (N, 4, 2)
        moved = corners @ m[:2, :2].T + m[:2, 2]
        new = torch.cat([moved.amin(1), moved.amax(1)], 1).float()
        clipped = clip_boxes(new, out_h, out_w)
        before = boxes.float() * scale  # what the box would be at this scale, for the kept-area ratio
        keep = keep_boxes(before, clipped, self.min_size, self.min_area_ratio, self.max_aspect_ratio)
        masks = None
        if "masks" in target:
            masks = warp_masks(target["masks"].as_subclass(Tensor), inverse, out_h, out_w, keep.nonzero()[:, 0])
        new_target = make_target(target, clipped[keep], target["labels"][keep], (out_h, out_w), masks)
        return tv_tensors.Image(out), new_target

    def extra_repr(self) -> str:
        return (f"degrees={self.degrees}, translate={self.translate}, scale={self.scale}, shear={self.shear}, "
                f"output_size={self.output_size}, prob={self.prob}")
