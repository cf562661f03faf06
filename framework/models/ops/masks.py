"""Between whole-image instance masks and the fixed M×M masks of a RoI mask head, both ways.

Training crops each positive RoI's ground-truth mask to an M×M target with RoIAlign (torchvision's
`project_masks_on_boxes`: scale 1, adaptive sampling, not aligned), so the targets are the ones torchvision's Mask
R-CNN trains on. What is ours: only the ground-truth masks some RoI matches are turned into float, one image at a
time, where torchvision converts every mask of the image (100 instances of a 640×640 image are 164 MB in float).
Inference pastes M×M probabilities back into the image with torchvision's `paste_masks_in_image`, a chunk of
detections at a time, so only the bool masks are kept at full size.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import roi_align

__all__ = ["mask_targets", "paste_masks"]


def mask_targets(gt_masks: Sequence[Tensor], rois: Tensor, image_of: Tensor, matched: Tensor, size: int) -> Tensor:
    """`[P, size, size]` float targets in [0, 1] for the RoIs `[P, 4]` (input pixels), each cropped from mask
    `matched[p]` of image `image_of[p]` (`gt_masks[i]`: `[N_i, h_i, w_i]`, any dtype, in the same pixels).

    The RoIs come in image order, as the second stage samples them, and the targets keep that order."""
    out = rois.new_zeros((len(rois), size, size), dtype=torch.float32)
    for i, masks in enumerate(gt_masks):
        sel = (image_of == i).nonzero().squeeze(1)
        if len(sel) == 0:
            continue
        used, slot = matched[sel].unique(return_inverse=True)
        crops = masks[used.to(masks.device)].to(device=rois.device, dtype=torch.float32)[:, None]
        boxes = torch.cat([slot[:, None].to(torch.float32), rois[sel].float()], 1)
        out[sel] = roi_align(crops, boxes, (size, size), spatial_scale=1.0)[:, 0]
    return out


def paste_masks(probs: Tensor, boxes: Tensor, size: tuple[int, int], threshold: float = 0.5,
                chunk: int = 32) -> Tensor:
    """Bool `[N, H, W]` masks of `size` from `[N, M, M]` probabilities inside `boxes` `[N, 4]` (pixels of `size`):
    torchvision's pasting (the mask grown by one pixel, bilinear resize into the box), then `> threshold`."""
    h, w = int(size[0]), int(size[1])
    out = torch.zeros((len(probs), h, w), dtype=torch.bool, device=probs.device)
    for start in range(0, len(probs), chunk):
        part = slice(start, start + chunk)
        out[part] = paste_masks_in_image(probs[part, None].float(), boxes[part].float(), (h, w))[:, 0] > threshold
    return out
