"""YOLOv8's head: anchor-free, decoupled, box distances as distributions (DFL), task-aligned assignment — batched.

Per pyramid level there is a classification branch and a box branch (each `stacked_convs` ConvNormAct 3×3 then a
1×1 prediction conv), not shared across levels, so the neck may keep a different width per level (YOLO's PAN).
Every point (cell centre, `PointGenerator`) predicts K class logits and, for each of the four distances (left,
top, right, bottom) to the box sides, in units of its stride (`DistanceBoxCoder`):

- `reg_max=16` (YOLOv8, the default): logits over the integer distances 0..15; the distance is the expectation of
  their softmax, a fixed projection onto 0..15 (ultralytics' "DFL" 1×1 conv; here the frozen parameter `dfl_proj`,
  which ultralytics counts among the parameters, so counts and state dicts line up). Besides the box loss on the
  decoded boxes, the Distribution Focal Loss teaches each side's distribution to concentrate at its target, and a
  distribution can express an uncertain side that one number cannot.
- `reg_max=None` (or 0): one softplus distance per side, positive and smooth, so a box never turns inside out;
  the head before DFL, kept so its configs and checkpoints still work.

Either way the box loss can be the IoU family on decoded boxes or L1 (`on_boxes=False`) on the stride-normalized
distances. Losses as YOLOv8 computes them: BCE against the soft task-aligned targets over all points and classes,
the box loss and DFL on positives weighted by their target score, all divided by the sum of the target scores (at
least 1). Assignment and losses run on the whole batch with padded ground truth; there is no loop over images.
No objectness branch (YOLOX's): with task-aligned targets the class score already carries localization quality.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from framework.models.blocks import ConvNormAct
from framework.models.losses import BCEWithLogitsLoss, CIoULoss, DistributionFocalLoss, check_loss
from framework.models.ops.anchors import PointGenerator
from framework.models.ops.box_coder import DistanceBoxCoder
from framework.models.ops.dynamic_assigners import DynamicAssignment, TaskAlignedAssigner
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
            max(c, min(num_classes, 100)) for classification and max(16, c // 4, 4 · reg_max) for boxes (the
            softplus head keeps the DFL head's 64 as the floor, as it always had).
        stacked_convs: 3×3 ConvNormAct layers per branch (YOLOv8: 2).
        reg_max: bins per side of the distance distribution (YOLOv8: 16, distances up to 15 strides); None or 0
            for softplus distances.
        cls_loss: a sigmoid classification loss taking soft targets; default `BCEWithLogitsLoss(loss_weight=0.5)`.
        box_loss: default `CIoULoss(loss_weight=7.5)` (0.5 and 7.5 are YOLOv8's loss gains); an `on_boxes=False`
            loss (L1) compares stride-normalized distances.
        dfl_loss: the distribution loss of a `reg_max` head; default `DistributionFocalLoss(loss_weight=1.5)`.
            Unused without `reg_max`.
        topk, alpha, beta, assigner_iou: `TaskAlignedAssigner` settings (YOLOv8: 10, 0.5, 6.0, "ciou").
        prior_prob: initial class probability, as a logit bias; None uses YOLOv8's per-level bias
            log(5 / K / (640 / stride)²) (5 objects of each class in a 640×640 image), which matters because every
            point is a candidate.
        box_bias: initial bias of the box outputs (YOLOv8 sets 1.0: equal bin logits, or softplus(1) ≈ 1.3 strides).
        init_distance: None keeps `box_bias`; a distance in strides (e.g. 1.0) sets the box biases so that every
            side starts near it: bins peaked there (bias −|bin − d|) or softplus⁻¹(d). YOLOv8's equal bins start
            every box at 7.5 strides per side, so an object of one or two strides gets a task-aligned score of ~0
            and is trained as background until the boxes have shrunk; 300 epochs get past that, a short run may
            not (tests/models/heads/test_yolo.py's overfit run finds no 16-px object that way).
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
        reg_max: int | None = 16,
        cls_loss: nn.Module | None = None,
        box_loss: nn.Module | None = None,
        dfl_loss: nn.Module | None = None,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        assigner_iou: Literal["iou", "ciou"] = "ciou",
        prior_prob: float | None = None,
        box_bias: float = 1.0,
        init_distance: float | None = None,
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
        self.reg_max = int(reg_max or 0)
        if self.reg_max == 1 or self.reg_max < 0:
            raise ValueError(f"reg_max must be None/0 (softplus distances) or at least 2 bins, got {reg_max}")
        self.num_classes = num_classes
        self.strides = strides
        self.point_generator = PointGenerator(strides, offset=0.5)
        self.box_coder = DistanceBoxCoder(normalize=True)
        self.assigner = TaskAlignedAssigner(topk, alpha, beta, iou=assigner_iou)
        self.cls_loss = check_loss(cls_loss or BCEWithLogitsLoss(loss_weight=0.5), "cls_loss", "YOLOHead",
                                   use_sigmoid=True)
        self.box_loss = check_loss(box_loss or CIoULoss(loss_weight=7.5), "box_loss", "YOLOHead")
        self.dfl_loss = (dfl_loss or DistributionFocalLoss(loss_weight=1.5)) if self.reg_max else None
        self.postprocess = Postprocessor(score_thr, nms_pre, nms_iou_thr, max_per_img, nms_type)
        cls_width = feat_channels or max(channels[0], min(num_classes, 100))
        box_width = feat_channels or max(16, channels[0] // 4, 4 * (self.reg_max or 16))
        box_outputs = 4 * self.reg_max if self.reg_max else 4
        self.cls_branches = nn.ModuleList(_branch(c, cls_width, stacked_convs, num_classes) for c in channels)
        self.box_branches = nn.ModuleList(_branch(c, box_width, stacked_convs, box_outputs) for c in channels)
        if self.reg_max:  # frozen: a fixed decoding, not a weight (the optimizer only takes requires_grad ones)
            self.dfl_proj = nn.Parameter(torch.arange(self.reg_max, dtype=torch.float32), requires_grad=False)
        for cls_branch, box_branch, stride in zip(self.cls_branches, self.box_branches, strides):
            bias = math.log(prior_prob / (1.0 - prior_prob)) if prior_prob is not None else \
                math.log(5.0 / num_classes / (640.0 / stride) ** 2)
            nn.init.constant_(cls_branch[-1].bias, bias)
            nn.init.constant_(box_branch[-1].bias, box_bias)
        if init_distance is not None:
            self._start_boxes_at(float(init_distance))

    @torch.no_grad()
    def _start_boxes_at(self, distance: float) -> None:
        """Box biases for an initial distance of about `distance` strides per side (see `init_distance`)."""
        upper = self.reg_max - 1 if self.reg_max else math.inf
        if not 0.0 < distance < upper:
            raise ValueError(f"init_distance must be in (0, {upper}), got {distance}")
        if self.reg_max:
            bias = -(torch.arange(self.reg_max, dtype=torch.float32) - distance).abs().repeat(4)
        else:
            bias = torch.full((4,), math.log(math.expm1(distance)))
        for branch in self.box_branches:
            branch[-1].bias.copy_(bias)

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        """The raw outputs over all levels: class logits `[B, P, K]`, box outputs `[B, P, 4 · reg_max]` (bin
        logits, side-major: left's bins, then top's, …) or `[B, P, 4]` (before softplus), and each level's (H, W).
        Points are ordered level by level, then row-major as `PointGenerator` makes them; `distances` decodes."""
        if len(feats) != len(self.cls_branches):
            raise ValueError(f"YOLOHead was built for {len(self.cls_branches)} levels, got {len(feats)} feature maps")
        cls, box, sizes = [], [], []
        for f, cls_branch, box_branch in zip(feats, self.cls_branches, self.box_branches):
            sizes.append((f.shape[-2], f.shape[-1]))
            cls.append(cls_branch(f).flatten(2).transpose(1, 2))
            box.append(box_branch(f).flatten(2).transpose(1, 2))
        return torch.cat(cls, 1), torch.cat(box, 1), sizes

    def distances(self, box_out: Tensor) -> Tensor:
        """ltrb distances `[..., 4]` in strides, float32, from box outputs `[..., 4 · reg_max]` (the expectation of
        each side's softmax over the bins 0..reg_max-1) or `[..., 4]` (softplus). A product and a sum rather than
        a matmul, which autocast would run in half precision."""
        if not self.reg_max:
            return F.softplus(box_out.float())
        return (box_out.float().unflatten(-1, (4, self.reg_max)).softmax(-1) * self.dfl_proj).sum(-1)

    def loss(self, feats: Sequence[Tensor], targets: Sequence[dict],
             image_sizes: Sequence[tuple[int, int]] | None = None) -> dict[str, Tensor]:
        """`loss_cls`, `loss_box` and, with `reg_max`, `loss_dfl`. `image_sizes` is accepted for the Detector's
        contract but not needed: points in the padding are never inside a box, so they only ever serve as
        negatives (as in YOLOv8)."""
        cls_logits, box_out, sizes = self(feats)
        return self.detection_losses(cls_logits, box_out, sizes, targets)[0]

    def detection_losses(self, cls_logits: Tensor, box_out: Tensor, sizes: Sequence[tuple[int, int]],
                         targets: Sequence[dict]) -> tuple[dict[str, Tensor], DynamicAssignment]:
        """The losses of `loss` from the raw outputs of `forward`, and the assignment they were computed with, so a
        head built on this one (YOLO-seg's masks) trains its extra outputs on the same positives."""
        points, strides = self.point_generator.grid_points(sizes, cls_logits.device)
        dist = self.distances(box_out)
        pred_boxes = self.box_coder.decode(dist, points, strides)  # [B, P, 4] input pixels
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, cls_logits.device)
        assigned = self.assigner.assign(cls_logits.detach().sigmoid(), pred_boxes.detach(), points, gt_boxes,
                                        gt_labels, gt_valid)
        normalizer = assigned.scores.sum().clamp(min=1.0)
        losses = {"loss_cls": self.cls_loss(cls_logits, assigned.scores) / normalizer}

        fg = assigned.fg_mask
        weight = assigned.scores.sum(-1)[fg]
        target_boxes = assigned.boxes[fg]
        batch = cls_logits.shape[0]
        pos_points, pos_strides = points.expand(batch, -1, -1)[fg], strides.expand(batch, -1)[fg]
        target_dist = self.box_coder.encode(target_boxes, pos_points, pos_strides)  # in strides
        if getattr(self.box_loss, "on_boxes", False):
            losses["loss_box"] = self.box_loss(pred_boxes[fg], target_boxes, weight) / normalizer
        else:
            losses["loss_box"] = self.box_loss(dist[fg], target_dist, weight) / normalizer
        if self.reg_max:
            bins = box_out[fg].unflatten(-1, (4, self.reg_max))
            losses["loss_dfl"] = self.dfl_loss(bins, target_dist, weight) / normalizer
        return losses, assigned

    def dense_predictions(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[int]]:
        """Every point decoded, before any selection (what the ONNX export runs): boxes `[B, P, 4]` (XYXY, input
        pixels, not clipped), class probabilities `[B, P, K]` and the points per level. Both variants: `distances`
        takes the DFL expectation or the softplus; `predict` takes it over every point too, so the numbers agree
        bit for bit."""
        return self.decode_dense(*self(feats))

    def decode_dense(self, cls_logits: Tensor, box_out: Tensor, sizes: Sequence[tuple[int, int]]
                     ) -> tuple[Tensor, Tensor, list[int]]:
        """`dense_predictions` from the raw outputs of `forward`."""
        points, strides = self.point_generator.compute(sizes, cls_logits.device)
        boxes = self.box_coder.decode(self.distances(box_out), points, strides)
        return boxes, cls_logits.sigmoid(), [h * w for h, w in sizes]

    @torch.no_grad()
    def predict(
        self, feats: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
        orig_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        return self.detections(*self(feats), image_sizes, orig_sizes)

    def detections(
        self, cls_logits: Tensor, box_out: Tensor, sizes: Sequence[tuple[int, int]],
        image_sizes: Sequence[tuple[int, int]], orig_sizes: Sequence[tuple[int, int]] | None = None,
        extras: dict[str, Tensor] | None = None,
    ) -> list[dict[str, Tensor]]:
        """`predict` from the raw outputs of `forward`. `extras` are further per-point outputs `[B, P, …]`: each
        detection carries its point's row under the same key (YOLO-seg's mask coefficients)."""
        points, strides = self.point_generator.grid_points(sizes, cls_logits.device)
        image_idx, point_idx, labels, scores = topk_per_level(
            cls_logits.sigmoid(), [h * w for h, w in sizes], self.postprocess.nms_pre, self.postprocess.score_thr)
        # every point's distances, then the candidates': the same numbers the ONNX export (which decodes all
        # points) gets, since the expectation's reduction need not round alike on a gathered subset
        dist = self.distances(box_out)[image_idx, point_idx]
        boxes = self.box_coder.decode(dist, points[point_idx], strides[point_idx])
        extras = {k: v[image_idx, point_idx] for k, v in (extras or {}).items()}
        return self.postprocess(boxes, scores, labels, image_idx, self.num_classes, image_sizes, orig_sizes,
                                extras=extras or None)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Say which `reg_max` weights of the other head variant need, instead of only listing size mismatches."""
        key = f"{prefix}box_branches.0.{len(self.box_branches[0]) - 1}.weight"
        saved = state_dict[key].shape[0] if key in state_dict else None
        if saved is not None and saved != self.box_branches[0][-1].out_channels:
            wanted = "null (softplus distances)" if saved == 4 else str(saved // 4)
            args[-1].append(f"these weights are a YOLO head with {saved} box outputs per point; build the model "
                            f"with model.head.reg_max={wanted}")
        super()._load_from_state_dict(state_dict, prefix, *args)


__all__ = ["YOLOHead"]
