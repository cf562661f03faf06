"""PCA lighting noise (Krizhevsky et al., 2012, "AlexNet"): shift every pixel's colour along the principal
components of natural-image RGB values.

Written here because torchvision has no equivalent: `ColorJitter` scales brightness, contrast, saturation and hue
independently, while this adds one random offset, `eigvec · (α ⊙ eigval)` with `α ~ N(0, std²)`, drawn per image,
that follows how colours actually co-vary under changing illumination. The default components are the ImageNet
ones (for RGB values in [0, 1]) that the ResNet training recipes use.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from framework.data.transforms.base import ImageTransform

IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))


class PCALighting(ImageTransform):
    """Add `eigvec · (α ⊙ eigval)` to every pixel, `α ~ N(0, std²)` per image and component.

    Args:
        std: standard deviation of α (0.1 in AlexNet; 0 disables it).
        eigval, eigvec: principal variances and components (columns) of RGB values in [0, 1].
        prob: probability of applying it to an image.
    """

    def __init__(self, std: float = 0.1, eigval: Sequence[float] = IMAGENET_EIGVAL,
                 eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC, prob: float = 1.0) -> None:
        super().__init__()
        if std < 0:
            raise ValueError(f"PCALighting: std must be >= 0, got {std}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"PCALighting: prob must be in [0, 1], got {prob}")
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)
        if self.eigvec.shape != (len(self.eigval), len(self.eigval)):
            raise ValueError(f"PCALighting: eigvec must be {len(self.eigval)}x{len(self.eigval)} to match eigval, "
                             f"got {tuple(self.eigvec.shape)}")
        self.std, self.prob = float(std), float(prob)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if self.std == 0 or torch.rand(()) >= self.prob:
            return {"offset": None}
        alpha = torch.randn(len(self.eigval)) * self.std
        return {"offset": self.eigvec @ (alpha * self.eigval)}

    def apply_image(self, image: Tensor, params: dict[str, Any]) -> Tensor:
        offset = params["offset"]
        if offset is None:
            return image
        if image.shape[-3] != len(offset):
            raise ValueError(f"PCALighting: {len(offset)} components for an image with {image.shape[-3]} channels")
        if image.is_floating_point():  # values in [0, 1]
            out = (image + offset[:, None, None].to(image.dtype)).clamp_(0.0, 1.0)
        else:
            top = torch.iinfo(image.dtype).max
            out = (image.float() + offset[:, None, None] * top).round_().clamp_(0, top).to(image.dtype)
        return out
