"""The base of our photometric transforms: they change the image and nothing else.

torchvision's v2 transforms also visit plain tensors in the sample (labels, masks stored as `Tensor`), which a
colour transform must leave alone; one rule here instead of a copy in every transform.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2


class ImageTransform(v2.Transform):
    """Calls `apply_image(image, params)` on the `tv_tensors.Image` of a sample, as a plain tensor, and re-wraps
    the result; boxes, masks, labels and other entries pass through untouched. `apply_image` may return the
    image itself to leave it unchanged."""

    _transformed_types = (tv_tensors.Image,)

    def _needs_transform_list(self, flat_inputs: list[Any]) -> list[bool]:
        return [isinstance(x, tv_tensors.Image) for x in flat_inputs]

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = self.apply_image(inpt.as_subclass(Tensor), params)
        return tv_tensors.wrap(out, like=inpt)

    def apply_image(self, image: Tensor, params: dict[str, Any]) -> Tensor:
        raise NotImplementedError
