"""Region Proposal Network (Ren et al.), the first stage of Faster R-CNN, batched over images.

Same layers as torchvision's `RPNHead` (3×3 conv + ReLU, 1×1 objectness and 1×1 deltas per anchor) and the same
proposal selection (top-n per level on logits, clip, drop tiny boxes, NMS per level), so torchvision's weights
give the same proposals; assignment, sampling and losses run on the padded batch without a per-image loop.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from framework.models.heads.common import uniform_channels
from framework.models.losses import BCEWithLogitsLoss, SmoothL1Loss, check_loss
from framework.models.ops.anchors import AnchorGenerator
from framework.models.ops.assigners import MaxIoUAssigner
from framework.models.ops.box_coder import DeltaBoxCoder
from framework.models.ops.postprocess import Postprocessor, topk_per_level
from framework.models.ops.samplers import RandomSampler
from framework.models.ops.targets import pad_targets


class RPNHead(nn.Module):
    """Objectness and box deltas for every anchor, and the proposals they imply.

    Args:
        in_channels, strides: from the neck (every pyramid level is used).
        anchor_sizes, ratios, torchvision_anchors: anchors (torchvision: one size per level, 32…512, three ratios).
        pos_iou_thr, neg_iou_thr: anchor labels for training (0.7 / 0.3); low-quality matches are kept.
        num_samples, pos_fraction: anchors sampled per image for the losses.
        pre_nms_train/test, post_nms_train/test: proposals kept per level before NMS and per image after it.
        nms_iou_thr, min_size: proposal NMS (per level, as torchvision) and smallest proposal side.
        cls_loss, box_loss: objectness (sigmoid) and delta losses, normalized by the sampled anchors.
    """

    def __init__(
        self,
        in_channels: int | Sequence[int] = 256,
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        anchor_sizes: Sequence[Sequence[float]] = ((32,), (64,), (128,), (256,), (512,)),
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        torchvision_anchors: bool = True,
        pos_iou_thr: float = 0.7,
        neg_iou_thr: float = 0.3,
        num_samples: int = 256,
        pos_fraction: float = 0.5,
        pre_nms_train: int = 2000,
        pre_nms_test: int = 1000,
        post_nms_train: int = 2000,
        post_nms_test: int = 1000,
        nms_iou_thr: float = 0.7,
        min_size: float = 1e-3,
        cls_loss: nn.Module | None = None,
        box_loss: nn.Module | None = None,
    ) -> None:
        super().__init__()
        channels = uniform_channels(in_channels, "RPNHead")
        self.anchor_generator = AnchorGenerator(strides, ratios=ratios, sizes=anchor_sizes,
                                                torchvision_style=torchvision_anchors)
        na = self.anchor_generator.num_base_anchors
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.cls_out = nn.Conv2d(channels, na, 1)
        self.box_out = nn.Conv2d(channels, na * 4, 1)
        for layer in (self.conv, self.cls_out, self.box_out):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        self.assigner = MaxIoUAssigner(pos_iou_thr, neg_iou_thr, min_pos_iou=0.0, match_low_quality=True)
        self.sampler = RandomSampler(num_samples, pos_fraction)
        self.box_coder = DeltaBoxCoder((1.0, 1.0, 1.0, 1.0))
        self.pre_nms = {True: pre_nms_train, False: pre_nms_test}
        self.post_nms = {True: post_nms_train, False: post_nms_test}
        self.nms_iou_thr, self.min_size = nms_iou_thr, min_size
        self.cls_loss = check_loss(cls_loss or BCEWithLogitsLoss(), "cls_loss", "RPNHead", use_sigmoid=True)
        self.box_loss = check_loss(box_loss or SmoothL1Loss(beta=1.0 / 9), "box_loss", "RPNHead")

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        """Objectness logits [B, A] and deltas [B, A, 4] over all levels, plus each level's (H, W)."""
        obj, deltas, sizes = [], [], []
        for f in feats:
            b, _, h, w = f.shape
            sizes.append((h, w))
            t = torch.relu(self.conv(f))
            obj.append(self.cls_out(t).permute(0, 2, 3, 1).reshape(b, -1))
            deltas.append(self.box_out(t).permute(0, 2, 3, 1).reshape(b, -1, 4))
        return torch.cat(obj, 1), torch.cat(deltas, 1), sizes

    def proposals(self, objectness: Tensor, deltas: Tensor, anchors: Tensor, sizes: Sequence[tuple[int, int]],
                  image_sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
        """Per image, up to `post_nms` proposals [P, 4] sorted by objectness (no gradient flows through them)."""
        level_sizes = [h * w * self.anchor_generator.num_base_anchors for h, w in sizes]
        post = Postprocessor(score_thr=float("-inf"), nms_pre=self.pre_nms[self.training],
                             nms_iou_thr=self.nms_iou_thr, max_per_img=self.post_nms[self.training],
                             min_size=self.min_size)
        # top-n per level on the logits (the order sigmoid keeps), NMS within each level as torchvision does
        image_idx, anchor_idx, _, logits = topk_per_level(objectness.detach()[..., None], level_sizes, post.nms_pre,
                                                          float("-inf"))
        bounds = torch.tensor(level_sizes, device=anchor_idx.device).cumsum(0)
        level = torch.bucketize(anchor_idx, bounds, right=True)
        boxes = self.box_coder.decode(deltas.detach()[image_idx, anchor_idx].float(), anchors[anchor_idx])
        dets = post(boxes, logits.sigmoid(), level, image_idx, len(level_sizes), image_sizes, None)
        return [d["boxes"] for d in dets]

    def loss(self, objectness: Tensor, deltas: Tensor, anchors: Tensor, targets: Sequence[dict]) -> dict[str, Tensor]:
        gt_boxes, _, gt_valid = pad_targets(targets, objectness.device)
        assigned = self.assigner.assign(anchors, gt_boxes, gt_valid)
        pos, neg = self.sampler.sample(assigned)
        num = (pos | neg).sum().clamp(min=1).to(torch.float32)
        sampled = pos | neg
        loss_obj = self.cls_loss(objectness[sampled], pos[sampled].to(objectness.dtype)) / num
        idx = assigned.clamp(min=0)
        pos_gt = torch.gather(gt_boxes, 1, idx[..., None].expand(-1, -1, 4))[pos] if gt_boxes.shape[1] else \
            gt_boxes.new_zeros(0, 4)
        pos_anchors = anchors.expand(len(targets), -1, -1)[pos]
        if self.box_loss.on_boxes:
            loss_box = self.box_loss(self.box_coder.decode(deltas[pos], pos_anchors), pos_gt)
        else:
            loss_box = self.box_loss(deltas[pos], self.box_coder.encode(pos_gt, pos_anchors))
        return {"loss_rpn_cls": loss_obj, "loss_rpn_box": loss_box / num}
