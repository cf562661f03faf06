"""MixUp for detection (Zhang et al., 2019, "Bag of Freebies"): blend two images, keep both sets of boxes.

Written here because torchvision's `MixUp` is for classification (it mixes one-hot labels within a batch). For
detection the partner is fitted into the current image (keeping its aspect ratio, with a random scale jitter and
placement, YOLOX-style), the pixels are blended with a Beta-distributed ratio and the boxes of both are kept:
an object half visible is still an object.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from framework.data.transforms.boxes import clip_boxes, fill_value, keep_boxes, make_target, mask_presence, source_ids
from framework.data.transforms.pipeline import MixTransform, Sample


class MixUp(MixTransform):
    """Blend the sample with one partner: `r · image + (1 − r) · partner`, `r ~ Beta(alpha, alpha)`.

    Args:
        prob: chance per sample.
        alpha: Beta parameter; 32 (YOLOv5) keeps `r` near 0.5, 1.5 (the paper) spreads it.
        scale_range: the partner, first scaled to fit the image, is scaled again by a factor from this range.
        fill: colour around the partner, in 0–255 units.
        min_size, min_area_ratio, max_aspect_ratio: filter for partner boxes cut at the image edge.
    """

    num_partners = 1

    def __init__(self, prob: float = 1.0, alpha: float = 32.0, scale_range: Sequence[float] = (0.5, 1.5),
                 fill: float | Sequence[float] = 114, min_size: float = 2.0, min_area_ratio: float = 0.1,
                 max_aspect_ratio: float = 20.0) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"MixUp: prob must be in [0, 1], got {prob}")
        if alpha <= 0:
            raise ValueError(f"MixUp: alpha must be > 0, got {alpha}")
        lo, hi = (float(v) for v in scale_range)
        if not 0.0 < lo <= hi:
            raise ValueError(f"MixUp: scale_range must satisfy 0 < lo <= hi, got {scale_range}")
        self.prob, self.alpha, self.scale_range, self.fill = float(prob), float(alpha), (lo, hi), fill
        self.min_size, self.min_area_ratio, self.max_aspect_ratio = min_size, min_area_ratio, max_aspect_ratio

    def __call__(self, sample: Sample, partners: list[Sample]) -> Sample:
        (image, target), (other, other_target) = sample, partners[0]
        h, w = int(image.shape[-2]), int(image.shape[-1])
        oh, ow = int(other.shape[-2]), int(other.shape[-1])
        lo, hi = self.scale_range
        u = torch.rand(4)
        scale = min(h / oh, w / ow) * float(lo + (hi - lo) * u[0])
        nh, nw = max(1, round(oh * scale)), max(1, round(ow * scale))
        other, other_boxes = F.resize(other, [nh, nw]), F.resize(other_target["boxes"], [nh, nw])
        # a random placement: the partner's top-left anywhere that keeps the overlap maximal on each axis
        ox = int(u[1] * (w - nw + 1)) if nw <= w else -int(u[1] * (nw - w + 1))
        oy = int(u[2] * (h - nh + 1)) if nh <= h else -int(u[2] * (nh - h + 1))
        canvas = fill_value(self.fill, image).expand(image.shape[-3], h, w).clone()
        x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + nw, w), min(oy + nh, h)
        canvas[:, y0:y1, x0:x1] = other[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]

        ratio = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        mixed = image.as_subclass(Tensor).float() * ratio + canvas.float() * (1.0 - ratio)
        if not image.is_floating_point():
            mixed = mixed.round_().clamp_(0, torch.iinfo(image.dtype).max)
        shifted = other_boxes.as_subclass(Tensor).reshape(-1, 4) + torch.tensor([ox, oy, ox, oy])
        clipped = clip_boxes(shifted, h, w)
        keep = keep_boxes(shifted, clipped, self.min_size, self.min_area_ratio, self.max_aspect_ratio)
        boxes = torch.cat([target["boxes"].as_subclass(Tensor).reshape(-1, 4), clipped[keep]])
        labels = torch.cat([target["labels"], other_target["labels"][keep]])
        masks = None
        if mask_presence([sample, partners[0]], "MixUp"):  # the kept partner masks, resized as the partner was
            om = other_target["masks"].as_subclass(Tensor)[keep]
            own = target["masks"].as_subclass(Tensor)
            masks = own.new_zeros((len(own) + len(om), h, w))
            masks[:len(own)] = own
            if len(om):
                om = F.resize(tv_tensors.Mask(om), [nh, nw], interpolation=v2.InterpolationMode.NEAREST_EXACT)
                masks[len(own):, y0:y1, x0:x1] = om[:, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        out = make_target(target, boxes, labels, (h, w), masks, source_ids(target) + source_ids(other_target))
        return tv_tensors.Image(mixed.to(image.dtype)), out

    def __repr__(self) -> str:
        return f"MixUp(prob={self.prob}, alpha={self.alpha}, scale_range={self.scale_range})"
