"""Resize exactly as torchvision's detectors do (`GeneralizedRCNNTransform`), for converted torchvision weights.

torchvision's RetinaNet, FCOS and Faster R-CNN normalize the float image first and then resize it: bilinear,
`align_corners=False`, no antialiasing, to `int(side × s)` with `s = min(min_size / short side, max_size / long
side)`. `v2.Resize` has another size rule (the short side exactly `min_size`, the long one rounded down) and, on
uint8 pipelines, antialiasing, so its pixels differ: a converted COCO checkpoint would then not reproduce
torchvision's detections or its published AP. Hence this transform; `configs/pipeline/torchvision.yaml` puts it
after `Normalize`, which is where torchvision has it.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = ["RCNNResize", "rcnn_output_size"]


def rcnn_output_size(height: int, width: int, min_size: float, max_size: float) -> list[int]:
    """torchvision's (eager-mode) rule: scale so the short side reaches `min_size` unless the long side would pass
    `max_size`; sides truncated, as `interpolate(scale_factor=s, recompute_scale_factor=True)` does."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return [int(height * scale), int(width * scale)]


class RCNNResize(v2.Transform):
    """Resize image (float, normalized), boxes and masks by torchvision's detection rule.

    Args:
        min_size: target short side; a list is torchvision's multi-scale training (one drawn per image when
            `random_choice`, else the last one, as torchvision evaluates).
        max_size: cap on the long side.
        random_choice: draw `min_size` per image (training) instead of taking the last (evaluation).
    """

    def __init__(self, min_size: int | Sequence[int] = 800, max_size: int = 1333, random_choice: bool = False) -> None:
        super().__init__()
        sizes = [int(min_size)] if isinstance(min_size, (int, float)) else [int(s) for s in min_size]
        if not sizes or min(sizes) < 1 or int(max_size) < 1:
            raise ValueError(f"RCNNResize: min_size and max_size must be positive, got {min_size}, {max_size}")
        self.min_sizes, self.max_size, self.random_choice = sizes, int(max_size), random_choice

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        min_size = random.choice(self.min_sizes) if self.random_choice else self.min_sizes[-1]
        return {"size": rcnn_output_size(h, w, min_size, self.max_size)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Image):
            if not inpt.is_floating_point():
                raise TypeError("RCNNResize resizes the normalized float image, as torchvision does: put it after "
                                "Normalize in the pipeline")
            return F.resize(inpt, params["size"], interpolation=v2.InterpolationMode.BILINEAR, antialias=False)
        if isinstance(inpt, (tv_tensors.BoundingBoxes, tv_tensors.Mask)):
            return F.resize(inpt, params["size"])
        return inpt  # labels and other plain entries
