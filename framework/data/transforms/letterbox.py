"""Letterbox: fit the image into a fixed (h, w) keeping its aspect ratio, and pad the rest.

Written here because torchvision has no single transform for it (`Resize` either distorts the aspect or gives a
variable size, `Pad` needs fixed amounts). Fixed-size inputs are what YOLO-style training and exported models
want. For evaluation prefer `Resize(size=None, max_size=s)`: the collate function pads at the bottom/right, so
detections map back to the original image without knowing the letterbox offsets.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


class Letterbox(v2.Transform):
    """Resize to fit `size` (keeping the aspect ratio) and pad to exactly `size`.

    Args:
        size: output (h, w), or one side for a square.
        fill: padding colour in 0–255 units (masks are padded with 0).
        center: pad evenly on both sides (True) or only at the bottom/right (False).
        scale_up: also enlarge images smaller than `size` (False: only shrink).
    """

    def __init__(self, size: int | Sequence[int] = 640, fill: float | Sequence[float] = 114, center: bool = True,
                 scale_up: bool = True) -> None:
        super().__init__()
        self.size = (int(size), int(size)) if isinstance(size, int) else tuple(int(v) for v in size)
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"Letterbox: size must be one side or (h, w) of positive ints, got {size}")
        self.fill, self.center, self.scale_up = fill, center, scale_up

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        out_h, out_w = self.size
        scale = min(out_h / h, out_w / w)
        if not self.scale_up:
            scale = min(scale, 1.0)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        left = (out_w - nw) // 2 if self.center else 0
        top = (out_h - nh) // 2 if self.center else 0
        return {"resized": [nh, nw], "padding": [left, top, out_w - nw - left, out_h - nh - top]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.BoundingBoxes, tv_tensors.Mask, torch.Tensor)) or \
                type(inpt) is torch.Tensor:
            return inpt  # labels and other plain entries
        if isinstance(inpt, tv_tensors.Mask):  # pixel-centre sampling: the mask stays within half a pixel of its box
            return F.pad(F.resize(inpt, params["resized"], interpolation=v2.InterpolationMode.NEAREST_EXACT),
                         params["padding"], fill=0)
        out = F.resize(inpt, params["resized"])
        if isinstance(inpt, tv_tensors.Image):
            fill = [float(f) for f in (self.fill if isinstance(self.fill, Sequence) else [self.fill])]
            if inpt.is_floating_point():
                fill = [f / 255.0 for f in fill]
            return F.pad(out, params["padding"], fill=fill if len(fill) > 1 else fill[0])
        return F.pad(out, params["padding"], fill=0)
