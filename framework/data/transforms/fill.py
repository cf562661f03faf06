"""A padding colour for the image that leaves instance masks padded with 0.

torchvision's padding transforms (`RandomZoomOut`, `Pad`, `RandomCrop(pad_if_needed)`, `RandomAffine`) apply one
`fill` to every kind of data in the sample; a per-channel colour such as the SSD mean `[124, 116, 104]` is then
refused on a `tv_tensors.Mask` ("Non-scalar fill value is not supported"), and a scalar one would mark the padded
border as part of every instance. They also take a dict keyed by tv_tensor type, which YAML cannot write: this
builds it, so a config says `fill: {_target_: framework.data.transforms.image_fill, value: [124, 116, 104]}`.
"""
from __future__ import annotations

from typing import Any, Sequence

from torchvision import tv_tensors


def image_fill(value: float | Sequence[float], mask: float = 0) -> dict[Any, Any]:
    """`value` (0–255 units, one or one per channel) for images and other pixel data, `mask` for `tv_tensors.Mask`."""
    pixels = float(value) if isinstance(value, (int, float)) else [float(v) for v in value]
    return {tv_tensors.Mask: mask, "others": pixels}
