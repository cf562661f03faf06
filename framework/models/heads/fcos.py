"""FCOS head (Tian et al.): anchor-free, one point per feature cell regresses its distances to the box edges.

Same structure as torchvision's `FCOSHead` (GroupNorm towers, centerness on the regression tower, ReLU distances
in stride units, GIoU box loss, centre sampling) so torchvision's weights convert one-to-one; assignment and
losses run on the whole batch at once instead of torchvision's per-image loop.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from framework.models.heads.common import conv_tower, uniform_channels
from framework.models.losses import BCEWithLogitsLoss, FocalLoss, GIoULoss, check_loss, elementwise_box_iou
from framework.models.ops.anchors import PointGenerator
from framework.models.ops.box_coder import DistanceBoxCoder
from framework.models.ops.point_assigners import CenterSamplingAssigner, default_regress_ranges
from framework.models.ops.postprocess import Postprocessor, topk_per_level
from framework.models.ops.targets import pad_targets


class FCOSHead(nn.Module):
    """Classification tower → K sigmoid logits; regression tower → 4 distances and 1 centerness logit.

    Args:
        num_classes: foreground classes (sigmoid, no background class).
        in_channels, strides: from the neck (the Detector fills them in).
        feat_channels, stacked_convs, norm: the towers (torchvision: 256, 4, "gn").
        regress_ranges: per-level (min, max) of a box's largest point-to-edge distance; default (4s, 8s) per stride s
            with the first level open at 0 and the last at infinity.
        center_sampling, center_sample_radius: only points within `radius` strides of a box centre are positives.
        learnable_scales: a learned scalar per level multiplying the distances (mmdetection's FCOS); torchvision has
            none, so the torchvision-equivalent config leaves it off.
        point_offset, torchvision_points: where points sit in their cell (see `PointGenerator`).
        cls_loss, box_loss, centerness_loss: losses; an IoU-aware cls loss (varifocal) gets the IoU of the
            predicted box as its target.
        centerness_weighted_box: weight the box loss by the centerness target (mmdetection) instead of uniformly
            (torchvision).
        score_thr, nms_pre, nms_iou_thr, max_per_img, nms_type: inference; the score is sqrt(cls · centerness).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int | Sequence[int] = 256,
        strides: Sequence[int] = (8, 16, 32, 64, 128),
        feat_channels: int = 256,
        stacked_convs: int = 4,
        norm: str | None = "gn",
        regress_ranges: Sequence[Sequence[float]] | None = None,
        center_sampling: bool = True,
        center_sample_radius: float = 1.5,
        learnable_scales: bool = False,
        point_offset: float = 0.5,
        torchvision_points: bool = False,
        cls_loss: nn.Module | None = None,
        box_loss: nn.Module | None = None,
        centerness_loss: nn.Module | None = None,
        centerness_weighted_box: bool = False,
        prior_prob: float = 0.01,
        score_thr: float = 0.05,
        nms_pre: int = 1000,
        nms_iou_thr: float = 0.6,
        max_per_img: int = 100,
        nms_type: str = "nms",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        in_channels = uniform_channels(in_channels, "FCOSHead")
        self.num_classes = num_classes
        self.strides = [int(s) for s in strides]
        ranges = regress_ranges if regress_ranges is not None else default_regress_ranges(self.strides)
        if len(ranges) != len(self.strides):
            raise ValueError(f"regress_ranges has {len(ranges)} entries for {len(self.strides)} levels")
        self.regress_ranges = [(float(lo), float(hi)) for lo, hi in ranges]
        self.points = PointGenerator(self.strides, point_offset, torchvision_points)
        self.assigner = CenterSamplingAssigner(center_sampling, center_sample_radius)
        self.box_coder = DistanceBoxCoder(normalize=True)
        self.cls_loss = check_loss(cls_loss or FocalLoss(), "cls_loss", "FCOSHead", use_sigmoid=True)
        self.box_loss = check_loss(box_loss or GIoULoss(loss_weight=1.0), "box_loss", "FCOSHead")
        self.centerness_loss = check_loss(centerness_loss or BCEWithLogitsLoss(), "centerness_loss", "FCOSHead",
                                          use_sigmoid=True)
        self.centerness_weighted_box = centerness_weighted_box
        self.postprocess = Postprocessor(score_thr, nms_pre, nms_iou_thr, max_per_img, nms_type)
        self.cls_tower = conv_tower(in_channels, feat_channels, stacked_convs, norm)
        self.box_tower = conv_tower(in_channels, feat_channels, stacked_convs, norm)
        self.cls_out = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.box_out = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.centerness_out = nn.Conv2d(feat_channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(self.strides))) if learnable_scales else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor, list[tuple[int, int]]]:
        """Class logits [B, P, K], distances in stride units [B, P, 4] (≥ 0), centerness logits [B, P], sizes."""
        cls, dist, ctr, sizes = [], [], [], []
        for level, f in enumerate(feats):
            b, _, h, w = f.shape
            sizes.append((h, w))
            box_feat = self.box_tower(f)
            d = self.box_out(box_feat)
            if self.scales is not None:
                d = d * self.scales[level]
            cls.append(self.cls_out(self.cls_tower(f)).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes))
            dist.append(F.relu(d).permute(0, 2, 3, 1).reshape(b, -1, 4))
            ctr.append(self.centerness_out(box_feat).reshape(b, -1))
        return torch.cat(cls, 1), torch.cat(dist, 1), torch.cat(ctr, 1), sizes

    def _point_ranges(self, sizes: Sequence[tuple[int, int]], device: torch.device) -> Tensor:
        counts = torch.tensor([h * w for h, w in sizes], device=device)
        return torch.tensor(self.regress_ranges, device=device).repeat_interleave(counts, dim=0)

    def loss(self, feats: Sequence[Tensor], targets: Sequence[dict],
             image_sizes: Sequence[tuple[int, int]] | None = None) -> dict[str, Tensor]:
        cls_logits, dist, ctr_logits, sizes = self(feats)
        device = cls_logits.device
        points, point_strides = self.points.grid_points(sizes, device)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, device)
        assigned = self.assigner.assign(points, point_strides, self._point_ranges(sizes, device), gt_boxes, gt_valid)
        pos = assigned >= 0  # [B, P]
        num_pos = pos.sum().clamp(min=1).to(torch.float32)
        idx = assigned.clamp(min=0)
        batch = len(targets)
        pos_gt = torch.gather(gt_boxes, 1, idx[..., None].expand(-1, -1, 4))[pos] if gt_boxes.shape[1] else \
            gt_boxes.new_zeros(0, 4)
        pos_points = points.expand(batch, -1, -1)[pos]
        pos_strides = point_strides.expand(batch, -1)[pos]
        pos_dist = dist[pos]
        target_dist = self.box_coder.encode(pos_gt, pos_points, pos_strides)
        lr, tb = target_dist[:, 0::2], target_dist[:, 1::2]
        ctr_target = torch.sqrt((lr.min(-1).values / lr.max(-1).values) * (tb.min(-1).values / tb.max(-1).values))
        pos_pred_boxes = self.box_coder.decode(pos_dist, pos_points, pos_strides)

        matched_labels = torch.gather(gt_labels, 1, idx) if gt_labels.shape[1] else idx
        labels = torch.where(pos, matched_labels, -1)  # [B, P]: one class per positive point (sparse one-hot)
        cls_value = None
        if getattr(self.cls_loss, "iou_aware", False):
            cls_value = elementwise_box_iou(pos_pred_boxes.detach().float(), pos_gt).clamp(min=0)
        loss_cls = self.cls_loss.forward_labels(cls_logits, labels, cls_value) / num_pos

        if self.centerness_weighted_box:
            box_weight, box_norm = ctr_target, ctr_target.sum().clamp(min=1e-6)
        else:
            box_weight, box_norm = None, num_pos
        if self.box_loss.on_boxes:
            loss_box = self.box_loss(pos_pred_boxes, pos_gt, box_weight) / box_norm
        else:
            loss_box = self.box_loss(pos_dist, target_dist, box_weight) / box_norm
        loss_ctr = self.centerness_loss(ctr_logits[pos], ctr_target) / num_pos
        return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_centerness": loss_ctr}

    def dense_predictions(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[int]]:
        """Every point decoded, before any selection (what the ONNX export runs): boxes `[B, P, 4]` (XYXY, input
        pixels, not clipped), scores `[B, P, K]` = sqrt(cls · centerness) as in `predict`, and the points per level.
        Bit for bit `predict`'s numbers up to its candidate selection (decoding is elementwise)."""
        cls_logits, dist, ctr_logits, sizes = self(feats)
        points, strides = self.points.compute(sizes, cls_logits.device)
        scores = torch.sqrt(cls_logits.sigmoid() * ctr_logits.sigmoid()[..., None])
        return self.box_coder.decode(dist.float(), points, strides), scores, [h * w for h, w in sizes]

    @torch.no_grad()
    def predict(
        self, feats: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
        orig_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        cls_logits, dist, ctr_logits, sizes = self(feats)
        points, point_strides = self.points.grid_points(sizes, cls_logits.device)
        scores = torch.sqrt(cls_logits.sigmoid() * ctr_logits.sigmoid()[..., None])
        image_idx, point_idx, labels, scores = topk_per_level(
            scores, [h * w for h, w in sizes], self.postprocess.nms_pre, self.postprocess.score_thr)
        boxes = self.box_coder.decode(dist[image_idx, point_idx].float(), points[point_idx], point_strides[point_idx])
        return self.postprocess(boxes, scores, labels, image_idx, self.num_classes, image_sizes, orig_sizes)
