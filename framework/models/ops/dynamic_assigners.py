"""Dynamic label assignment: positives chosen from the network's own current predictions, for the whole batch.

Static assigners (`MaxIoUAssigner`) match fixed priors by geometry alone. TOOD's task-aligned assigner, which
YOLOv8 uses, ranks the points inside each ground-truth box by how well the prediction there already does *both*
tasks, t = s^α · IoU^β (s: predicted probability of the box's class, IoU: predicted box vs. ground truth), and
takes the top k, so classification and localization are trained towards the same points. Like the other
assigners here it runs on ground truth padded to `[B, M]` (`pad_targets`) with tensor ops only — no loop over
images — at the cost of `[B, M, P]` intermediates, as in the reference implementations.
"""
from __future__ import annotations

from typing import Callable, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from framework.models.losses import elementwise_box_iou, elementwise_complete_box_iou

BACKGROUND = -1


class DynamicAssignment(NamedTuple):
    """What a dense head needs from a dynamic assigner, per image and point.

    labels: `[B, P]` int64 class of the assigned box, BACKGROUND (-1) for negatives.
    boxes: `[B, P, 4]` XYXY of the assigned box (meaningless where `fg_mask` is False).
    scores: `[B, P, K]` soft classification targets: zero for negatives, the normalized alignment in the
        assigned class for positives (so their sum is the loss normalizer of YOLOv8).
    fg_mask: `[B, P]` bool, positives.
    gt_index: `[B, P]` int64 index of the assigned box in `[0, M)` (0 for negatives).
    """

    labels: Tensor
    boxes: Tensor
    scores: Tensor
    fg_mask: Tensor
    gt_index: Tensor


def points_inside_boxes(points: Tensor, boxes: Tensor, eps: float = 1e-9) -> Tensor:
    """`[B, M, P]`: whether point p (`points` `[P, 2]`) lies strictly inside box m of image b (`boxes` `[B, M, 4]`)."""
    lt = points[None, None] - boxes[..., None, :2]
    rb = boxes[..., None, 2:] - points[None, None]
    return torch.cat([lt, rb], dim=-1).amin(dim=-1) > eps


class TaskAlignedAssigner:
    """TOOD's task-aligned assigner (YOLOv8's defaults: topk 10, α 0.5, β 6).

    For every ground-truth box: candidates are the points strictly inside it (by more than `eps`); each gets the
    alignment t = s^α · IoU^β; the `topk` best candidates become its positives. A point claimed by several boxes
    keeps only the one its predicted box overlaps most. Soft targets: the positive's t, rescaled per box so that the
    box's best positive gets the box's best IoU (t · max IoU / max t), in the assigned class; zero elsewhere.

    Args:
        topk: positives per ground-truth box at most.
        alpha, beta: exponents of the classification score and of the IoU in the alignment.
        eps: numerical floor (inside test, divisions).
        iou: the overlap in the alignment, the claim resolution and the soft targets: "iou" (TOOD) or "ciou"
            (YOLOv8: complete IoU, clamped at 0, which also ranks by centre distance and aspect ratio).
    """

    IOU_FUNCTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
        "iou": elementwise_box_iou, "ciou": elementwise_complete_box_iou,
    }

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9,
                 iou: Literal["iou", "ciou"] = "iou") -> None:
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        if iou not in self.IOU_FUNCTIONS:
            raise ValueError(f"iou must be one of {sorted(self.IOU_FUNCTIONS)}, got {iou!r}")
        self.topk, self.alpha, self.beta, self.eps = int(topk), float(alpha), float(beta), float(eps)
        self.iou = iou

    @torch.no_grad()
    def assign(
        self, pred_scores: Tensor, pred_boxes: Tensor, points: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
        gt_valid: Tensor,
    ) -> DynamicAssignment:
        """`pred_scores` `[B, P, K]` probabilities, `pred_boxes` `[B, P, 4]` XYXY pixels, `points` `[P, 2]`, and the
        padded ground truth `gt_boxes` `[B, M, 4]`, `gt_labels` `[B, M]`, `gt_valid` `[B, M]` of `pad_targets`."""
        batch, num_points, num_classes = pred_scores.shape
        num_gt = gt_boxes.shape[1]
        device = pred_scores.device
        if num_gt == 0:
            return DynamicAssignment(
                torch.full((batch, num_points), BACKGROUND, dtype=torch.long, device=device),
                torch.zeros(batch, num_points, 4, device=device),
                torch.zeros(batch, num_points, num_classes, device=device),
                torch.zeros(batch, num_points, dtype=torch.bool, device=device),
                torch.zeros(batch, num_points, dtype=torch.long, device=device),
            )
        pred_scores, pred_boxes, gt_boxes = pred_scores.float(), pred_boxes.float(), gt_boxes.float()
        candidates = points_inside_boxes(points.float(), gt_boxes, self.eps) & gt_valid[..., None]  # [B, M, P]
        # the overlap only where it is used (candidates), zero elsewhere: CIoU over all [B, M, P] pairs is costly
        b, m, p = candidates.nonzero(as_tuple=True)
        iou = torch.zeros(candidates.shape, device=device)
        iou[b, m, p] = self.IOU_FUNCTIONS[self.iou](gt_boxes[b, m], pred_boxes[b, p]).clamp(min=0)
        labels = gt_labels.clamp(min=0)  # padding is -1; those rows are never candidates
        cls = pred_scores.gather(2, labels[:, None, :].expand(batch, num_points, num_gt)).transpose(1, 2)
        align = cls.pow(self.alpha) * iou.pow(self.beta) * candidates  # [B, M, P]

        k = min(self.topk, num_points)
        top = align.masked_fill(~candidates, -1.0).topk(k, dim=-1).indices  # non-candidates rank last
        pos = torch.zeros_like(candidates).scatter_(-1, top, True) & candidates
        # a point claimed by several boxes goes to the one its prediction overlaps most
        best = iou.masked_fill(~pos, -1.0).max(dim=1).indices  # [B, P]; faster than argmax (see MaxIoUAssigner)
        pos &= F.one_hot(best, num_gt).transpose(1, 2).bool()

        fg = pos.any(dim=1)
        gt_index = pos.to(torch.uint8).max(dim=1).indices  # the single claimer, 0 for background
        target_labels = torch.where(fg, gt_labels.gather(1, gt_index), BACKGROUND)
        target_boxes = gt_boxes.gather(1, gt_index[..., None].expand(-1, -1, 4))

        align = align * pos
        max_align = align.amax(dim=-1, keepdim=True)  # [B, M, 1]
        max_iou = (iou * pos).amax(dim=-1, keepdim=True)
        quality = (align * max_iou / (max_align + self.eps)).amax(dim=1)  # [B, P]
        scores = F.one_hot(target_labels.clamp(min=0), num_classes).float() * (quality * fg)[..., None]
        return DynamicAssignment(target_labels, target_boxes, scores, fg, gt_index)


__all__ = ["BACKGROUND", "DynamicAssignment", "TaskAlignedAssigner", "points_inside_boxes"]
