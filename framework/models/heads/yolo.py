"""YOLOv8-style head: anchor-free, decoupled, trained with the task-aligned assigner — batched throughout.

Per pyramid level there is a classification branch and a box branch (each `stacked_convs` ConvNormAct 3×3 then a
1×1 prediction conv), not shared across levels, so the neck may keep a different width per level (YOLO's PAN).
Every point (cell centre, `PointGenerator`) predicts K class logits and four distances (left, top, right, bottom)
to the box sides in units of its stride (`DistanceBoxCoder`).

Choices, and why:
- No objectness branch (YOLOX's) and no DFL (YOLOv8's distribution of distances): with task-aligned targets the
  class score already carries localization quality, and plain distances keep every box loss usable, the IoU family
  on decoded boxes as well as L1 (`on_boxes=False`) on the stride-normalized distances.
- Distances go through softplus: positive and smooth, so a box never turns inside out (which breaks the IoU
  losses) and large distances do not explode as with exp.
- Losses as YOLOv8 computes them: BCE against the soft task-aligned targets over all points and classes, a box
  loss on positives weighted by their target score, both divided by the sum of the target scores (at least 1).
  Assignment and losses run on the whole batch with padded ground truth; there is no loop over images.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from framework.models.blocks import ConvNormAct
from framework.models.losses import BCEWithLogitsLoss, CIoULoss, check_loss
from framework.models.ops.anchors import PointGenerator
from framework.models.ops.box_coder import DistanceBoxCoder
from framework.models.ops.dynamic_assigners import TaskAlignedAssigner
from framework.models.ops.postprocess import Postprocessor, topk_per_level
from framework.models.ops.targets import pad_targets


def _branch(in_channels: int, feat_channels: int, num_convs: int, out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = [ConvNormAct(in_channels if i == 0 else feat_channels, feat_channels, 3)
                               for i in range(num_convs)]
    layers.append(nn.Conv2d(feat_channels if num_convs else in_channels, out_channels, 1))
    return nn.Sequential(*layers)


class YOLOHead(nn.Module):
    """Decoupled anchor-free head with task-aligned assignment (see the module docstring).

    Args:
        num_classes: number of foreground classes (sigmoid classification).
        in_channels: channels of the neck outputs, one int for all levels or one per level (Detector fills this).
        strides: stride of each level (Detector fills this from the neck).
        feat_channels: width of both branches; None uses YOLOv8's rule from the finest level's width c:
            max(c, min(num_classes, 100)) for classification and max(16, c // 4, 64) for boxes.
        stacked_convs: 3×3 ConvNormAct layers per branch (YOLOv8: 2).
        cls_loss: a sigmoid classification loss taking soft targets; default `BCEWithLogitsLoss(loss_weight=0.5)`.
        box_loss: default `CIoULoss(loss_weight=7.5)` (0.5 and 7.5 are YOLOv8's loss gains); an `on_boxes=False`
            loss (L1) compares stride-normalized distances.
        topk, alpha, beta: `TaskAlignedAssigner` settings (YOLOv8: 10, 0.5, 6.0).
        prior_prob: initial class probability; None uses YOLOv8's per-level prior (5 objects of each class in a
            640×640 image: p = 5 / K / (640 / stride)²), which matters because every point is a candidate.
        box_bias: initial bias of the distance outputs (YOLOv8 sets 1.0; softplus(1) ≈ 1.3 strides per side).
        score_thr, nms_pre, nms_iou_thr, max_per_img, nms_type: inference (see `Postprocessor`); the defaults
            are ultralytics' validation settings (conf 0.001, IoU 0.7, 300 detections).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int | Sequence[int] = 256,
        strides: Sequence[int] = (8, 16, 32),
        feat_channels: int | None = None,
        stacked_convs: int = 2,
        cls_loss: nn.Module | None = None,
        box_loss: nn.Module | None = None,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        prior_prob: float | None = None,
        box_bias: float = 1.0,
        score_thr: float = 0.001,
        nms_pre: int = 1000,
        nms_iou_thr: float = 0.7,
        max_per_img: int = 300,
        nms_type: str = "nms",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        strides = [int(s) for s in strides]
        channels = [int(in_channels)] * len(strides) if isinstance(in_channels, int) else [int(c) for c in in_channels]
        if len(channels) != len(strides):
            raise ValueError(f"YOLOHead got {len(channels)} in_channels for {len(strides)} strides")
        if prior_prob is not None and not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must be in (0, 1) or None, got {prior_prob}")
        self.num_classes = num_classes
        self.strides = strides
        self.point_generator = PointGenerator(strides, offset=0.5)
        self.box_coder = DistanceBoxCoder(normalize=True)
        self.assigner = TaskAlignedAssigner(topk, alpha, beta)
        self.cls_loss = check_loss(cls_loss or BCEWithLogitsLoss(loss_weight=0.5), "cls_loss", "YOLOHead",
                                   use_sigmoid=True)
        self.box_loss = check_loss(box_loss or CIoULoss(loss_weight=7.5), "box_loss", "YOLOHead")
        self.postprocess = Postprocessor(score_thr, nms_pre, nms_iou_thr, max_per_img, nms_type)
        cls_width = feat_channels or max(channels[0], min(num_classes, 100))
        box_width = feat_channels or max(16, channels[0] // 4, 64)
        self.cls_branches = nn.ModuleList(_branch(c, cls_width, stacked_convs, num_classes) for c in channels)
        self.box_branches = nn.ModuleList(_branch(c, box_width, stacked_convs, 4) for c in channels)
        for cls_branch, box_branch, stride in zip(self.cls_branches, self.box_branches, strides):
            p = prior_prob if prior_prob is not None else min(5.0 / num_classes / (640.0 / stride) ** 2, 0.5)
            nn.init.constant_(cls_branch[-1].bias, math.log(p / (1.0 - p)))
            nn.init.constant_(box_branch[-1].bias, box_bias)

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        """Class logits `[B, P, K]` and distances `[B, P, 4]` (ltrb, in strides) over all levels, plus each level's
        (H, W); points are ordered level by level, then row-major as `PointGenerator` makes them."""
        if len(feats) != len(self.cls_branches):
            raise ValueError(f"YOLOHead was built for {len(self.cls_branches)} levels, got {len(feats)} feature maps")
        cls, dist, sizes = [], [], []
        for f, cls_branch, box_branch in zip(feats, self.cls_branches, self.box_branches):
            b, _, h, w = f.shape
            sizes.append((h, w))
            cls.append(cls_branch(f).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes))
            dist.append(F.softplus(box_branch(f)).permute(0, 2, 3, 1).reshape(b, -1, 4))
        return torch.cat(cls, 1), torch.cat(dist, 1), sizes

    def loss(self, feats: Sequence[Tensor], targets: Sequence[dict],
             image_sizes: Sequence[tuple[int, int]] | None = None) -> dict[str, Tensor]:
        """`loss_cls` and `loss_box`. `image_sizes` is accepted for the Detector's contract but not needed: points
        in the padding are never inside a box, so they only ever serve as negatives (as in YOLOv8)."""
        cls_logits, dist, sizes = self(feats)
        points, strides = self.point_generator.grid_points(sizes, cls_logits.device)
        pred_boxes = self.box_coder.decode(dist.float(), points, strides)  # [B, P, 4] input pixels
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, cls_logits.device)
        assigned = self.assigner.assign(cls_logits.detach().sigmoid(), pred_boxes.detach(), points, gt_boxes,
                                        gt_labels, gt_valid)
        normalizer = assigned.scores.sum().clamp(min=1.0)
        loss_cls = self.cls_loss(cls_logits, assigned.scores) / normalizer

        fg = assigned.fg_mask
        weight = assigned.scores.sum(-1)[fg]
        target_boxes = assigned.boxes[fg]
        if getattr(self.box_loss, "on_boxes", False):
            loss_box = self.box_loss(pred_boxes[fg], target_boxes, weight)
        else:
            batch = cls_logits.shape[0]
            pos_points, pos_strides = points.expand(batch, -1, -1)[fg], strides.expand(batch, -1)[fg]
            loss_box = self.box_loss(dist[fg], self.box_coder.encode(target_boxes, pos_points, pos_strides), weight)
        return {"loss_cls": loss_cls, "loss_box": loss_box / normalizer}

    @torch.no_grad()
    def predict(
        self, feats: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
        orig_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        cls_logits, dist, sizes = self(feats)
        points, strides = self.point_generator.grid_points(sizes, cls_logits.device)
        image_idx, point_idx, labels, scores = topk_per_level(
            cls_logits.sigmoid(), [h * w for h, w in sizes], self.postprocess.nms_pre, self.postprocess.score_thr)
        boxes = self.box_coder.decode(dist[image_idx, point_idx].float(), points[point_idx], strides[point_idx])
        return self.postprocess(boxes, scores, labels, image_idx, self.num_classes, image_sizes, orig_sizes)


__all__ = ["YOLOHead"]
