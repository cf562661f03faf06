"""The second stage of Faster R-CNN: pool each proposal's features and classify/refine it.

Pooling is torchvision's multi-scale RoIAlign (`LevelRoIAlign`: each box pooled from the pyramid level its size
maps to, the levels side by side on the CPU). The box head is torchvision's `TwoMLPHead` + `FastRCNNPredictor`
layout (fc6, fc7, K+1 class scores with background at index 0, class-specific deltas for every slot), so
torchvision's weights load one-to-one. Matching, sampling and
losses work on the padded batch of proposals at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from framework.models.heads.common import uniform_channels
from framework.models.losses import CrossEntropyLoss, SmoothL1Loss, check_loss
from framework.models.ops.assigners import IGNORE, MaxIoUAssigner
from framework.models.ops.box_coder import DeltaBoxCoder
from framework.models.ops.postprocess import Postprocessor
from framework.models.ops.roi_align import LevelRoIAlign
from framework.models.ops.samplers import RandomSampler
from framework.models.ops.targets import pad_targets


def pad_boxes(boxes: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-image box lists → `[B, N, 4]` and a validity mask `[B, N]`."""
    valid = nn.utils.rnn.pad_sequence([torch.ones(len(b), dtype=torch.bool, device=b.device) for b in boxes],
                                      batch_first=True)
    return nn.utils.rnn.pad_sequence(list(boxes), batch_first=True), valid


@dataclass
class RoISamples:
    """The proposals a training step samples for the second stage, all images concatenated in image order.

    The box losses and Mask R-CNN's mask loss train on the same draw, so it is made once and shared.
    """

    rois: Tensor           # [R, 4] sampled boxes (proposals and ground truth) in input pixels
    counts: list[int]      # how many of them each image has
    image_of: Tensor       # [R] the image each belongs to
    labels: Tensor         # [R] 0 for background, k + 1 for class k
    matched: Tensor        # [R] index of the matched ground truth in its image (0 for negatives)
    is_pos: Tensor         # [R] bool, the positives
    matched_boxes: Tensor  # [R, 4] the matched ground-truth boxes (meaningful at the positives only)


class RoIBoxHead(nn.Module):
    """Box classification and regression on pooled proposals.

    Args:
        num_classes: foreground classes; the head has K + 1 outputs, slot 0 being background.
        in_channels: channels of the pyramid levels.
        num_levels: how many of the finest levels RoIAlign pools from (torchvision: P2–P5, not the max-pool P6).
        strides: of the neck's levels, finest first; the first `num_levels` set RoIAlign's scales.
        output_size, sampling_ratio: RoIAlign grid (7×7, 2 samples per bin).
        representation_size: width of fc6/fc7.
        pos_iou_thr, neg_iou_thr: proposal labels for training (0.5 / 0.5: no ignored band).
        num_samples, pos_fraction: proposals sampled per image (512 at 1/4 positive); ground-truth boxes are added
            to the proposals first, as torchvision and Detectron do.
        box_coder_weights: delta scaling (10, 10, 5, 5).
        cls_loss: a softmax loss (cross-entropy, label smoothing available); box_loss: on class-specific deltas.
        score_thr, nms_iou_thr, max_per_img, nms_type, min_size: inference (torchvision: 0.05, 0.5, 100, 1e-2).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int | Sequence[int] = 256,
        num_levels: int = 4,
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        output_size: int = 7,
        sampling_ratio: int = 2,
        representation_size: int = 1024,
        pos_iou_thr: float = 0.5,
        neg_iou_thr: float = 0.5,
        num_samples: int = 512,
        pos_fraction: float = 0.25,
        box_coder_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        cls_loss: nn.Module | None = None,
        box_loss: nn.Module | None = None,
        score_thr: float = 0.05,
        nms_iou_thr: float = 0.5,
        max_per_img: int = 100,
        nms_type: str = "nms",
        min_size: float = 1e-2,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        channels = uniform_channels(in_channels, "RoIBoxHead")
        if len(strides) < num_levels:
            raise ValueError(f"RoIBoxHead pools from num_levels={num_levels} levels but the neck has {len(strides)} "
                             f"(strides {list(strides)})")
        self.num_classes, self.num_levels = num_classes, num_levels
        self.pooler = LevelRoIAlign(strides[:num_levels], output_size, sampling_ratio)
        self.fc6 = nn.Linear(channels * output_size**2, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.cls_out = nn.Linear(representation_size, num_classes + 1)
        self.box_out = nn.Linear(representation_size, (num_classes + 1) * 4)
        nn.init.normal_(self.cls_out.weight, std=0.01)
        nn.init.normal_(self.box_out.weight, std=0.001)
        for layer in (self.cls_out, self.box_out):
            nn.init.zeros_(layer.bias)
        self.assigner = MaxIoUAssigner(pos_iou_thr, neg_iou_thr, match_low_quality=False)
        self.sampler = RandomSampler(num_samples, pos_fraction)
        self.box_coder = DeltaBoxCoder(box_coder_weights)
        self.cls_loss = check_loss(cls_loss or CrossEntropyLoss(), "cls_loss", "RoIBoxHead", use_sigmoid=False)
        self.box_loss = check_loss(box_loss or SmoothL1Loss(beta=1.0 / 9), "box_loss", "RoIBoxHead")
        self.postprocess = Postprocessor(score_thr, 0, nms_iou_thr, max_per_img, nms_type, min_size=min_size)

    def forward(self, feats: Sequence[Tensor], proposals: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Class logits [R, K+1] and deltas [R, K+1, 4] for the proposals of all images, concatenated in order."""
        x = self.pooler(feats, proposals).flatten(1)
        x = F.relu(self.fc7(F.relu(self.fc6(x))))
        return self.cls_out(x), self.box_out(x).reshape(x.shape[0], -1, 4)

    def sample(self, proposals: Sequence[Tensor], targets: Sequence[dict]) -> RoISamples:
        """Match the proposals (ground truth added) to the ground truth and sample those the losses train on."""
        device = proposals[0].device if len(proposals) else torch.device("cpu")
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, device)
        props, prop_valid = pad_boxes([p.detach() for p in proposals])
        boxes = torch.cat([props, gt_boxes], 1)  # ground truth joins the candidates
        valid = torch.cat([prop_valid, gt_valid], 1)
        assigned = self.assigner.assign(boxes, gt_boxes, gt_valid)
        assigned = torch.where(valid, assigned, torch.full_like(assigned, IGNORE))
        pos, neg = self.sampler.sample(assigned)
        sampled = pos | neg
        counts = sampled.sum(1)
        rois = boxes[sampled]  # image-major order, as the split below expects
        idx = assigned[sampled].clamp(min=0)
        image_of = torch.arange(len(targets), device=device).repeat_interleave(counts)
        is_pos = pos[sampled]
        has_gt = gt_boxes.shape[1] > 0
        labels = torch.where(is_pos, gt_labels[image_of, idx] + 1, torch.zeros_like(idx)) if has_gt else \
            torch.zeros_like(idx)
        matched_boxes = gt_boxes[image_of, idx] if has_gt else rois
        return RoISamples(rois, counts.tolist(), image_of, labels, idx, is_pos, matched_boxes)

    def loss(self, feats: Sequence[Tensor], proposals: Sequence[Tensor], targets: Sequence[dict],
             image_sizes: Sequence[tuple[int, int]], samples: RoISamples | None = None) -> dict[str, Tensor]:
        """`samples`: what `sample(proposals, targets)` drew, when the caller needs them too (Mask R-CNN trains
        its mask stage on the same positives); drawn here otherwise."""
        s = samples if samples is not None else self.sample(proposals, targets)
        logits, deltas = self(feats, s.rois.split(s.counts))
        labels, is_pos = s.labels, s.is_pos
        num = labels.numel() if labels.numel() else 1
        loss_cls = self.cls_loss(logits, labels) / num
        pos_deltas = deltas[is_pos, labels[is_pos]]
        pos_rois = s.rois[is_pos]
        pos_gt = s.matched_boxes[is_pos]
        if self.box_loss.on_boxes:
            loss_box = self.box_loss(self.box_coder.decode(pos_deltas, pos_rois), pos_gt)
        else:
            loss_box = self.box_loss(pos_deltas, self.box_coder.encode(pos_gt, pos_rois))
        return {"loss_cls": loss_cls, "loss_box": loss_box / num}

    @torch.no_grad()
    def predict(self, feats: Sequence[Tensor], proposals: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
                orig_sizes: Sequence[tuple[int, int]] | None = None) -> list[dict[str, Tensor]]:
        logits, deltas = self(feats, proposals)
        rois = torch.cat(list(proposals))
        counts = torch.tensor([len(p) for p in proposals], device=rois.device)
        image_of = torch.arange(len(proposals), device=rois.device).repeat_interleave(counts)
        scores = F.softmax(logits.float(), -1)[:, 1:]  # drop background
        boxes = self.box_coder.decode(deltas[:, 1:].float(), rois[:, None])  # [R, K, 4]
        keep = scores > self.postprocess.score_thr
        r, k = keep.nonzero(as_tuple=True)
        return self.postprocess(boxes[r, k], scores[r, k], k, image_of[r], self.num_classes, image_sizes, orig_sizes)
