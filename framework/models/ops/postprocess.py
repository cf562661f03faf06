"""From dense per-prior scores to final detections, for the whole batch at once.

Every head ends the same way (torchvision's and mmdetection's order): keep the top candidates per level, decode,
clip to the image, class-aware NMS, keep the best `max_per_img`, map to original-image pixels. Doing it for all
images in one call (the NMS group is the (image, class) pair) avoids torchvision's per-image Python loop.
"""
from __future__ import annotations

from typing import Literal, Mapping, Sequence

import torch
from torch import Tensor

from framework.models.ops.nms import NMS_TYPES, batched_nms


def topk_per_level(scores: Tensor, level_sizes: Sequence[int], k: int, score_thr: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The `k` best (prior, class) pairs of each level and image that score above `score_thr`.

    `scores` is `[B, P, K]` (probabilities). Returns flat `image_idx`, `prior_idx`, `labels`, `scores` of the
    candidates, ordered by image only loosely (NMS sorts them anyway).
    """
    batch, _, num_classes = scores.shape
    cand_scores, cand_idx, start = [], [], 0
    for n in level_sizes:
        flat = scores[:, start:start + n].reshape(batch, -1)
        s, i = flat.topk(min(k, flat.shape[1]), dim=1)
        cand_scores.append(s)
        cand_idx.append(i + start * num_classes)
        start += n
    s, flat_idx = torch.cat(cand_scores, 1), torch.cat(cand_idx, 1)
    keep = s > score_thr
    image_idx = torch.arange(batch, device=s.device)[:, None].expand_as(s)[keep]
    flat_idx = flat_idx[keep]
    return image_idx, flat_idx // num_classes, flat_idx % num_classes, s[keep]


def clip_boxes(boxes: Tensor, image_idx: Tensor, image_sizes: Sequence[tuple[int, int]]) -> Tensor:
    """Clip each box to the image (before padding) it belongs to."""
    sizes = torch.tensor([[w, h] for h, w in image_sizes], dtype=boxes.dtype, device=boxes.device)[image_idx]
    upper = sizes.repeat(1, 2)
    return torch.minimum(boxes.clamp(min=0), upper)


def multiclass_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, image_idx: Tensor, num_images: int, num_classes: int,
    iou_thr: float, max_per_img: int, nms_type: Literal["nms", "diou"] = "nms", class_agnostic: bool = False,
    extras: Mapping[str, Tensor] | None = None,
) -> list[dict[str, Tensor]]:
    """NMS per (image, class) — or per image with `class_agnostic` — then the best `max_per_img` of each image.
    `extras`: further per-candidate tensors (first dimension aligned with `boxes`); each kept detection carries its
    row under the same key, e.g. the mask coefficients of a prototype-mask head."""
    groups = image_idx if class_agnostic else image_idx * num_classes + labels
    keep = batched_nms(boxes, scores, groups, iou_thr, nms_type)  # sorted by decreasing score
    boxes, scores, labels, image_idx = boxes[keep], scores[keep], labels[keep], image_idx[keep]
    extras = {k: v[keep] for k, v in (extras or {}).items()}
    out = []
    for i in range(num_images):
        sel = (image_idx == i).nonzero().squeeze(1)[:max_per_img]
        out.append({"boxes": boxes[sel], "scores": scores[sel], "labels": labels[sel],
                    **{k: v[sel] for k, v in extras.items()}})
    return out


def rescale_detections(
    detections: list[dict[str, Tensor]], image_sizes: Sequence[tuple[int, int]],
    orig_sizes: Sequence[tuple[int, int]] | None,
) -> list[dict[str, Tensor]]:
    """Map boxes from network-input pixels (image before padding) back to original-image pixels."""
    if orig_sizes is None:
        return detections
    for det, (h, w), (oh, ow) in zip(detections, image_sizes, orig_sizes):
        boxes = det["boxes"]
        scale = torch.tensor([ow / w, oh / h, ow / w, oh / h], dtype=boxes.dtype, device=boxes.device)
        det["boxes"] = boxes * scale
    return detections


class Postprocessor:
    """The inference settings every head shares, applied in the order above.

    Args:
        score_thr: candidates scoring at or below this are dropped.
        nms_pre: candidates kept per level and image before NMS.
        nms_iou_thr: IoU (or DIoU) above which a lower-scored box of the same class is suppressed.
        max_per_img: detections kept per image after NMS.
        nms_type: "nms" (torchvision's) or "diou" (DIoU-NMS).
        class_agnostic: suppress across classes too.
        min_size: drop boxes with a side below this many pixels after clipping (torchvision's R-CNN uses 1e-2).
    """

    def __init__(
        self, score_thr: float = 0.05, nms_pre: int = 1000, nms_iou_thr: float = 0.5, max_per_img: int = 100,
        nms_type: Literal["nms", "diou"] = "nms", class_agnostic: bool = False, min_size: float = 0.0,
    ) -> None:
        if nms_type not in NMS_TYPES:
            raise ValueError(f"nms_type must be one of {NMS_TYPES}, got {nms_type!r}")
        self.score_thr, self.nms_pre, self.nms_iou_thr, self.max_per_img = score_thr, nms_pre, nms_iou_thr, max_per_img
        self.nms_type, self.class_agnostic, self.min_size = nms_type, class_agnostic, min_size

    def __call__(
        self, boxes: Tensor, scores: Tensor, labels: Tensor, image_idx: Tensor, num_classes: int,
        image_sizes: Sequence[tuple[int, int]], orig_sizes: Sequence[tuple[int, int]] | None,
        *, extras: Mapping[str, Tensor] | None = None,
    ) -> list[dict[str, Tensor]]:
        """Detections per image (`boxes`, `scores`, `labels`; see the class docstring). `extras` are further
        per-candidate tensors aligned with `boxes`, passed through the same selection: each detection dict gets
        its rows under the same keys, unscaled (a head uses them, e.g. for masks, and then drops them)."""
        boxes = clip_boxes(boxes.float(), image_idx, image_sizes)
        if self.min_size > 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            big = (wh >= self.min_size).all(dim=1)
            boxes, scores, labels, image_idx = boxes[big], scores[big], labels[big], image_idx[big]
            extras = {k: v[big] for k, v in (extras or {}).items()}
        dets = multiclass_nms(boxes, scores.float(), labels, image_idx, len(image_sizes), num_classes,
                              self.nms_iou_thr, self.max_per_img, self.nms_type, self.class_agnostic, extras)
        return rescale_detections(dets, image_sizes, orig_sizes)
