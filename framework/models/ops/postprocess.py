"""From dense per-anchor scores to final detections, for the whole batch at once."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms


def multiclass_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, image_idx: Tensor, num_images: int, num_classes: int,
    iou_thr: float, max_per_img: int,
) -> list[dict[str, Tensor]]:
    """Class-aware NMS over the candidates of all images in one `torchvision.ops.batched_nms` call.

    The (image, class) pair is the NMS group, so boxes of different images or classes never suppress each other.
    """
    keep = batched_nms(boxes, scores, image_idx * num_classes + labels, iou_thr)  # sorted by decreasing score
    boxes, scores, labels, image_idx = boxes[keep], scores[keep], labels[keep], image_idx[keep]
    out = []
    for i in range(num_images):
        sel = (image_idx == i).nonzero().squeeze(1)[:max_per_img]
        out.append({"boxes": boxes[sel], "scores": scores[sel], "labels": labels[sel]})
    return out


def rescale_detections(
    detections: list[dict[str, Tensor]], image_sizes: Sequence[tuple[int, int]],
    orig_sizes: Sequence[tuple[int, int]] | None,
) -> list[dict[str, Tensor]]:
    """Clip boxes to each image (before padding) and map them back to original-image pixels."""
    for i, det in enumerate(detections):
        h, w = image_sizes[i]
        boxes = det["boxes"]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        if orig_sizes is not None:
            oh, ow = orig_sizes[i]
            scale = torch.tensor([ow / w, oh / h, ow / w, oh / h], dtype=boxes.dtype, device=boxes.device)
            det["boxes"] = boxes * scale
    return detections
