"""uint8 image → normalized float image, as the last step of a pipeline.

torchvision's `ToDtype` needs a `torch.dtype`, which YAML cannot express, so the two steps (scale to [0, 1],
then `(x - mean) / std`) are one transform here, computed as torchvision's detectors compute them (so
pipeline=torchvision gives their pixels exactly). Boxes and other entries pass through untouched.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F

from framework.data.transforms.base import ImageTransform


class Normalize(ImageTransform):
    def __init__(self, mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225)) -> None:
        super().__init__()
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    def apply_image(self, image: Tensor, params: dict[str, Any]) -> Tensor:
        out = image.to(torch.float32)
        if not image.is_floating_point():
            # x / 255, as torchvision's detectors get their input (`ToDtype` multiplies by 1/255, one ulp apart)
            out = out.div_(torch.iinfo(image.dtype).max)
        return F.normalize(out, mean=self.mean, std=self.std)
