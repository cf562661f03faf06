"""GridMask (Chen et al., 2020): hide a regular, randomly shifted and rotated grid of squares in the image.

Written here because torchvision has no equivalent: `RandomErasing` hides one rectangle, while GridMask hides
many small regions spread evenly over the image, so an object is rarely hidden completely and boxes can stay as
they are. Put it before `Normalize`: the filled pixels take the normalization mean, so after `Normalize` they are
zero, the value the network sees for "no information" (on an already normalized image use `fill=[0, 0, 0]`).

The probability can ramp up with the epochs (`prob × min(1, epoch / ramp_epochs)`), as the paper does, because a
strong occlusion early in training slows convergence. The pipeline calls `set_epoch` in every data-loader worker
(the epoch travels with the sampled indices); `effective_prob` is what is applied in the current epoch.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor
from torchvision import tv_tensors

from framework.data.transforms.base import ImageTransform


class GridMask(ImageTransform):
    """Hide a grid of squares.

    Args:
        d1, d2: the grid period `d` (pixels) is drawn uniformly from [d1, d2] per image.
        ratio: the kept band of each period, `l = ratio · d`. With `mode=1` (the paper's default) the hidden squares
            have side `d − l`, so a fraction `(1 − ratio)²` of the image is hidden; `mode=0` hides the bands
            instead (a fraction `1 − (1 − ratio)²`).
        rotate: the grid is rotated by an angle drawn uniformly from [0, rotate) degrees (0: never rotated).
        prob: probability of applying it to an image once the ramp is over.
        ramp_epochs: epochs over which the probability grows linearly from 0 to `prob` (0: no ramp).
        fill: the fill colour as fractions of the full range, one per channel (the normalization mean).
    """

    def __init__(self, d1: int = 24, d2: int = 64, ratio: float = 0.6, rotate: float = 0.0, mode: int = 1,
                 prob: float = 0.7, ramp_epochs: int = 0,
                 fill: Sequence[float] = (0.485, 0.456, 0.406)) -> None:
        super().__init__()
        if not 2 <= d1 <= d2:
            raise ValueError(f"GridMask: need 2 <= d1 <= d2, got d1={d1}, d2={d2}")
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"GridMask: ratio must be in (0, 1), got {ratio}")
        if mode not in (0, 1):
            raise ValueError(f"GridMask: mode must be 0 (hide the bands) or 1 (hide the squares), got {mode}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"GridMask: prob must be in [0, 1], got {prob}")
        if ramp_epochs < 0 or rotate < 0:
            raise ValueError(f"GridMask: ramp_epochs and rotate must be >= 0, got {ramp_epochs}, {rotate}")
        self.d1, self.d2, self.ratio, self.rotate, self.mode = int(d1), int(d2), float(ratio), float(rotate), mode
        self.prob, self.ramp_epochs = float(prob), int(ramp_epochs)
        self.fill = [float(f) for f in fill]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def effective_prob(self) -> float:
        if self.ramp_epochs == 0:
            return self.prob
        return self.prob * min(1.0, self.epoch / self.ramp_epochs)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if not any(isinstance(x, tv_tensors.Image) for x in flat_inputs) or torch.rand(()) >= self.effective_prob:
            return {"hidden": None}
        image = next(x for x in flat_inputs if isinstance(x, tv_tensors.Image))
        return {"hidden": self.hidden_mask(*image.shape[-2:])}

    def hidden_mask(self, height: int, width: int) -> Tensor:
        """Boolean (height, width) mask of the hidden pixels, drawn with torch's global generator.

        The grid is evaluated at each pixel's (rotated) coordinates rather than drawn on a larger canvas and
        rotated: the same mask as a nearest-neighbour rotation, at a tenth of the cost."""
        d = int(torch.randint(self.d1, self.d2 + 1, ()))
        kept = min(max(round(d * self.ratio), 1), d - 1)  # both the band and the square at least 1 px
        shift_y, shift_x = torch.randint(0, d, (2,)).tolist()
        ys = torch.arange(height, dtype=torch.float32) + 0.5 - height / 2  # pixel centres about the image centre
        xs = torch.arange(width, dtype=torch.float32) + 0.5 - width / 2
        if self.rotate > 0:
            angle = math.radians(float(torch.rand(())) * self.rotate)
            cos, sin = math.cos(angle), math.sin(angle)
            u = cos * xs[None, :] + sin * ys[:, None]
            v = cos * ys[:, None] - sin * xs[None, :]
        else:
            u, v = xs[None, :], ys[:, None]
        band_x = (u - shift_x).floor_().remainder_(d) < kept
        band_y = (v - shift_y).floor_().remainder_(d) < kept
        bands = band_y | band_x
        return ~bands if self.mode == 1 else bands

    def apply_image(self, image: Tensor, params: dict[str, Any]) -> Tensor:
        hidden = params["hidden"]
        if hidden is None:
            return image
        if len(self.fill) != image.shape[-3]:
            raise ValueError(f"GridMask: fill has {len(self.fill)} values for an image with {image.shape[-3]} channels")
        fill = torch.tensor(self.fill, dtype=torch.float32)
        if not image.is_floating_point():  # uint8 images: the fraction of the full range
            fill = (fill * torch.iinfo(image.dtype).max).round()
        return torch.where(hidden, fill.to(image.dtype)[:, None, None], image)
