"""uint8 image → normalized float image, as the last step of a pipeline.

torchvision's `ToDtype` needs a `torch.dtype`, which YAML cannot express, so the two steps (scale to [0, 1],
then `(x - mean) / std`) are one transform here. Boxes and other entries pass through untouched.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


class Normalize(v2.Transform):
    _transformed_types = (tv_tensors.Image, torch.Tensor)

    def __init__(self, mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225)) -> None:
        super().__init__()
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    def _needs_transform_list(self, flat_inputs: list[Any]) -> list[bool]:
        # only images: plain tensors in the target (labels, masks as Tensor) must not be normalized
        return [isinstance(x, tv_tensors.Image) for x in flat_inputs]

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = F.to_dtype(inpt, torch.float32, scale=True)
        return F.normalize(out, mean=self.mean, std=self.std)
