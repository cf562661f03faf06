"""Gaussian pixel noise on images of any dtype, with a probability.

torchvision's `GaussianNoise` only accepts float images, while our pipelines stay uint8 until `Normalize` (a
quarter of the memory traffic in data-loader workers); sigma here is a fraction of the full range either way.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from framework.data.transforms.base import ImageTransform


class GaussianNoise(ImageTransform):
    """Add `N(0, sigma²)` noise per pixel and channel, sigma drawn from [0, max_sigma] per image.

    Args:
        max_sigma: the largest standard deviation, as a fraction of the full range (0.03 ≈ 8 grey levels).
        prob: chance per image.
    """

    def __init__(self, max_sigma: float = 0.03, prob: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= max_sigma <= 1.0 or not 0.0 <= prob <= 1.0:
            raise ValueError(f"GaussianNoise: max_sigma and prob must be in [0, 1], got {max_sigma}, {prob}")
        self.max_sigma, self.prob = float(max_sigma), float(prob)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if float(torch.rand(())) >= self.prob:
            return {"sigma": 0.0}
        return {"sigma": float(torch.rand(())) * self.max_sigma}

    def apply_image(self, image: Tensor, params: dict[str, Any]) -> Tensor:
        sigma = params["sigma"]
        if sigma == 0.0:
            return image
        if image.is_floating_point():
            return (image + torch.randn_like(image) * sigma).clamp_(0.0, 1.0)
        top = torch.iinfo(image.dtype).max
        noisy = image.float() + torch.randn(image.shape) * (sigma * top)
        return noisy.round_().clamp_(0, top).to(image.dtype)
