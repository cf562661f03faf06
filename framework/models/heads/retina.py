"""RetinaNet head: anchors, IoU assignment, focal + box loss and decoding, all batched.

Unlike torchvision's `RetinaNetHead`, which computes losses image by image, assignment and losses here run on the
whole batch with padded ground truth: one IoU tensor, one focal-loss call, one box-loss call.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from framework.models.heads.common import conv_tower, uniform_channels
from framework.models.losses import FocalLoss, L1Loss, check_loss
from framework.models.ops.anchors import AnchorGenerator
from framework.models.ops.assigners import IGNORE, MaxIoUAssigner
from framework.models.ops.box_coder import DeltaBoxCoder
from framework.models.ops.postprocess import Postprocessor, topk_per_level
from framework.models.ops.targets import pad_targets


class RetinaHead(nn.Module):
    """Shared classification and box towers applied to every pyramid level.

    Args:
        num_classes: number of foreground classes (sigmoid classification, no background class).
        in_channels: channels of the neck outputs (Detector fills this in).
        strides: stride of each pyramid level (Detector fills this from the neck).
        feat_channels, stacked_convs, norm: width and depth of the towers; norm=None (paper) or "gn".
        octave_base_scale, scales_per_octave, ratios, anchor_sizes, anchor_offset, torchvision_anchors: anchor shapes
            (see `AnchorGenerator`); `anchor_sizes` per level replaces the octave scales.
        pos_iou_thr, neg_iou_thr, min_pos_iou: `MaxIoUAssigner` thresholds.
        cls_loss, box_loss: loss modules; a box loss with `on_boxes=True` (GIoU) gets decoded boxes.
        score_thr, nms_pre, nms_iou_thr, max_per_img, nms_type: inference (see `Postprocessor`).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int | Sequence[int] = 256,
        strides: Sequence[int] = (8, 16, 32, 64, 128),
        feat_channels: int = 256,
        stacked_convs: int = 4,
        norm: str | None = None,
        octave_base_scale: float = 4.0,
        scales_per_octave: int = 3,
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        anchor_sizes: Sequence[Sequence[float]] | None = None,
        anchor_offset: float = 0.5,
        torchvision_anchors: bool = False,
        pos_iou_thr: float = 0.5,
        neg_iou_thr: float = 0.4,
        min_pos_iou: float = 0.0,
        cls_loss: nn.Module | None = None,
        box_loss: nn.Module | None = None,
        box_coder_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        prior_prob: float = 0.01,
        score_thr: float = 0.05,
        nms_pre: int = 1000,
        nms_iou_thr: float = 0.5,
        max_per_img: int = 100,
        nms_type: str = "nms",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        in_channels = uniform_channels(in_channels, "RetinaHead")
        self.num_classes = num_classes
        self.anchor_generator = AnchorGenerator(strides, octave_base_scale, scales_per_octave, ratios, anchor_offset,
                                                anchor_sizes, torchvision_anchors)
        self.assigner = MaxIoUAssigner(pos_iou_thr, neg_iou_thr, min_pos_iou)
        self.box_coder = DeltaBoxCoder(box_coder_weights)
        self.cls_loss = check_loss(cls_loss or FocalLoss(), "cls_loss", "RetinaHead", use_sigmoid=True)
        self.box_loss = check_loss(box_loss or L1Loss(), "box_loss", "RetinaHead")
        self.postprocess = Postprocessor(score_thr, nms_pre, nms_iou_thr, max_per_img, nms_type)
        na = self.anchor_generator.num_base_anchors
        self.cls_tower = conv_tower(in_channels, feat_channels, stacked_convs, norm)
        self.box_tower = conv_tower(in_channels, feat_channels, stacked_convs, norm)
        self.cls_out = nn.Conv2d(feat_channels, na * num_classes, 3, padding=1)
        self.box_out = nn.Conv2d(feat_channels, na * 4, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        # start with every anchor at background probability ~prior_prob so the focal loss is stable at step 0
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        """Class logits [B, A, K] and box deltas [B, A, 4] over all levels, plus each level's (H, W)."""
        cls, box, sizes = [], [], []
        for f in feats:
            b, _, h, w = f.shape
            sizes.append((h, w))
            cls.append(self.cls_out(self.cls_tower(f)).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes))
            box.append(self.box_out(self.box_tower(f)).permute(0, 2, 3, 1).reshape(b, -1, 4))
        return torch.cat(cls, 1), torch.cat(box, 1), sizes

    def loss(self, feats: Sequence[Tensor], targets: Sequence[dict],
             image_sizes: Sequence[tuple[int, int]] | None = None) -> dict[str, Tensor]:
        cls_logits, deltas, sizes = self(feats)
        anchors = self.anchor_generator.grid_anchors(sizes, cls_logits.device)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, cls_logits.device)
        assigned = self.assigner.assign(anchors, gt_boxes, gt_valid)  # [B, A]
        pos = assigned >= 0
        num_pos = pos.sum().clamp(min=1).to(cls_logits.dtype)
        idx = assigned.clamp(min=0)
        matched_labels = torch.gather(gt_labels, 1, idx) if gt_labels.shape[1] else torch.zeros_like(idx)
        labels = torch.where(pos, matched_labels, -1)  # [B, A]: one class per positive anchor (sparse one-hot)
        valid = (assigned != IGNORE).to(cls_logits.dtype)
        loss_cls = self.cls_loss.forward_labels(cls_logits, labels, weight=valid) / num_pos

        pos_anchors = anchors.expand(len(targets), -1, -1)[pos]
        pos_gt = torch.gather(gt_boxes, 1, idx[..., None].expand(-1, -1, 4))[pos] if gt_boxes.shape[1] else pos_anchors
        if getattr(self.box_loss, "on_boxes", False):
            loss_box = self.box_loss(self.box_coder.decode(deltas[pos], pos_anchors), pos_gt)
        else:
            loss_box = self.box_loss(deltas[pos], self.box_coder.encode(pos_gt, pos_anchors))
        return {"loss_cls": loss_cls, "loss_box": loss_box / num_pos}

    def dense_predictions(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[int]]:
        """Every anchor decoded, before any selection (what the ONNX export runs): boxes `[B, A, 4]` (XYXY, input
        pixels, not clipped), class probabilities `[B, A, K]` and the anchors per level. `predict` up to its
        candidate selection, over all anchors: decoding is elementwise, so decoding everything and then gathering
        gives `predict`'s numbers bit for bit. Uses `AnchorGenerator.compute` (no cache), which `torch.export`
        records in the graph when the sizes are symbolic."""
        cls_logits, deltas, sizes = self(feats)
        anchors = self.anchor_generator.compute(sizes, cls_logits.device)
        boxes = self.box_coder.decode(deltas.float(), anchors)
        na = self.anchor_generator.num_base_anchors
        return boxes, cls_logits.sigmoid(), [h * w * na for h, w in sizes]

    @torch.no_grad()
    def predict(
        self, feats: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
        orig_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        cls_logits, deltas, sizes = self(feats)
        anchors = self.anchor_generator.grid_anchors(sizes, cls_logits.device)
        level_sizes = [h * w * self.anchor_generator.num_base_anchors for h, w in sizes]
        image_idx, anchor_idx, labels, scores = topk_per_level(
            cls_logits.sigmoid(), level_sizes, self.postprocess.nms_pre, self.postprocess.score_thr)
        boxes = self.box_coder.decode(deltas[image_idx, anchor_idx].float(), anchors[anchor_idx])
        return self.postprocess(boxes, scores, labels, image_idx, self.num_classes, image_sizes, orig_sizes)
