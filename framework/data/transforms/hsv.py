"""HSV jitter as the YOLO recipes use it: random gains on saturation and value, and a random hue shift.

Written here because torchvision's `ColorJitter` changes saturation by blending with the grey image (which also
moves HSV value) and has no multiplicative gain on HSV saturation and value. Both gains are applied directly in RGB
without an HSV round trip: scaling every channel multiplies V = max(R, G, B); moving every channel away from the
maximum, `c' = max − (max − c)·g`, multiplies S = (max − min)/max by g and keeps hue and value, with the gain capped
per pixel so that S and V stay ≤ 1 (the clip an HSV implementation does). Hue uses torchvision's `adjust_hue`.

One deliberate difference from YOLOv5/v8: their hue gain multiplies OpenCV's 0–180 hue, which shifts blue hues
more than red ones; here the hue is shifted by the same random fraction of the colour circle for every pixel.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F

from framework.data.transforms.base import ImageTransform


class HSVJitter(ImageTransform):
    """Per image: hue shift ~ U(−hue, hue) of the circle, saturation and value gains ~ 1 + U(−s, s), 1 + U(−v, v).

    Args:
        hue: largest hue shift as a fraction of the colour circle (≤ 0.5).
        saturation, value: largest relative change of HSV saturation and value.
        prob: probability of applying it to an image.
    """

    def __init__(self, hue: float = 0.015, saturation: float = 0.7, value: float = 0.4, prob: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"HSVJitter: hue must be in [0, 0.5], got {hue}")
        if not (0.0 <= saturation <= 1.0 and 0.0 <= value <= 1.0):
            raise ValueError(f"HSVJitter: saturation and value must be in [0, 1], got {saturation}, {value}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"HSVJitter: prob must be in [0, 1], got {prob}")
        self.hue, self.saturation, self.value, self.prob = float(hue), float(saturation), float(value), float(prob)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if torch.rand(()) >= self.prob:
            return {"gains": None}
        u = torch.rand(3) * 2 - 1
        return {"gains": (float(u[0]) * self.hue, 1 + float(u[1]) * self.saturation, 1 + float(u[2]) * self.value)}

    def apply_image(self, image: Tensor, params: dict[str, Any]) -> Tensor:
        if params["gains"] is None:
            return image
        hue_shift, sat_gain, val_gain = params["gains"]
        x = F.to_dtype(image, torch.float32, scale=True)
        if hue_shift != 0:
            x = F.adjust_hue(x, hue_shift)
        x = scale_saturation(x, sat_gain)
        x = scale_value(x, val_gain)
        return F.to_dtype(x, image.dtype, scale=True)


def scale_value(x: Tensor, gain: float) -> Tensor:
    """Multiply the HSV value of an RGB image in [0, 1] by `gain`, capped per pixel at V = 1 so hue and saturation
    stay (clamping each channel instead would shift the colour of bright pixels)."""
    top = x.amax(dim=-3, keepdim=True)
    return x * (1.0 / top.clamp_min(1e-12)).clamp(max=gain)


def scale_saturation(x: Tensor, gain: float) -> Tensor:
    """Multiply the HSV saturation of an RGB image in [0, 1] by `gain` (capped at S = 1), keeping hue and value."""
    top = x.amax(dim=-3, keepdim=True)
    spread = top - x.amin(dim=-3, keepdim=True)
    # S·g ≤ 1  ⇔  g ≤ max / (max − min); grey pixels (spread 0) stay as they are
    cap = torch.where(spread > 0, top / spread.clamp_min(1e-12), torch.full_like(top, float("inf")))
    g = cap.clamp(max=gain)
    return top - (top - x) * g
