"""YOLO-seg: YOLOv8's detection head plus prototype masks (YOLACT's idea, as YOLOv8-seg uses it), batched.

Instance masks come from two small additions to `YOLOHead` (whose boxes, classes, assignment and losses are reused
unchanged):

- a prototype module on the finest neck level (3×3 conv → 2× transposed-conv upsampling → 3×3 conv → 1×1 conv to
  `num_protos` maps): `num_protos` (32) image-wide "prototype" maps at half that level's stride (4 for P3);
- per level, a coefficient branch beside the class and box branches: `num_protos` coefficients per point.

A detection's mask is sigmoid(coefficients · prototypes), cropped to its box: the network never predicts a mask per
object, only a mixing vector, so masks cost one matrix product after NMS. With `num_protos=32` and the default widths
the layout is ultralytics' YOLOv8-seg `Segment` head module for module (11,821,056 parameters for the s size at 80
classes, 654,496 more than the detector).

Training: the task-aligned assigner's positives (the same as the box losses') each take the ground-truth mask of the
box they were assigned to. Both sides are cropped to that ground-truth box and resampled to `mask_loss_size`²
cells with RoIAlign — the prototypes before the product (RoIAlign is linear, so cropping the prototypes equals
cropping the mask logits), the target at full image resolution (soft values near its edges). Scoring every
positive on its own box, at one size, is YOLOv8-seg's crop-and-normalize-by-box-area: each instance weighs the same
whatever its size, only pixels inside its box count, and any per-instance mask loss (BCE, Dice, BCE+Dice) applies
unchanged. The sum over positives is divided by their number (YOLOv8's normalizer). Memory grows with positives ×
`num_protos` × `mask_loss_size`², not with the image size.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from framework.models.blocks import ConvNormAct
from framework.models.heads.yolo import YOLOHead, _branch
from framework.models.losses import MaskBCELoss
from framework.models.ops.dynamic_assigners import DynamicAssignment

class PrototypeNet(nn.Module):
    """Finest neck level → `num_protos` prototype maps at twice its resolution (YOLOv8-seg's `Proto`)."""

    def __init__(self, in_channels: int, channels: int, num_protos: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, channels, 3)
        self.upsample = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.conv2 = ConvNormAct(channels, channels, 3)
        self.conv3 = ConvNormAct(channels, num_protos, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.conv2(self.upsample(self.conv1(x))))


def paste_prototype_masks(coefficients: Tensor, prototypes: Tensor, boxes: Tensor, image_size: Sequence[int],
                          out_size: Sequence[int], proto_stride: int = 4, mask_thr: float = 0.5) -> Tensor:
    """Binary masks of one image's detections, as `YOLOSegHead.predict` makes them (and as anyone can from the
    ONNX outputs `mask_coefficients` and `prototypes`): sigmoid(coefficients · prototypes), sampled bilinearly at
    the centres of the `out_size` pixels inside each box (pixel centres inside it), thresholded at `mask_thr`.

    The sampling maps `out_size` onto the image before padding (`image_size` (h, w), input pixels), which covers the
    first h / `proto_stride` × w / `proto_stride` prototype cells: the same values as upsampling the prototypes
    `proto_stride`× to the padded input, cutting off the padding and resizing to `out_size`, in one step and only
    inside the boxes. That is what keeps 300 masks per image cheap: the work is the boxes' area, not 300 full
    images (each box a few small tensors, as torchvision pastes Mask R-CNN's masks one by one).

    Args:
        coefficients: `[N, M]`. prototypes: `[M, hp, wp]` (the image's prototype maps). boxes: `[N, 4]` XYXY in
            `out_size` pixels.
    Returns: bool `[N, *out_size]`.
    """
    (h, w), (oh, ow) = (int(v) for v in image_size), (int(v) for v in out_size)
    num, hp, wp = len(coefficients), prototypes.shape[-2], prototypes.shape[-1]
    masks = torch.zeros(num, oh, ow, dtype=torch.bool, device=prototypes.device)
    if num == 0:
        return masks
    prob = (coefficients.float() @ prototypes.float().flatten(1)).view(num, 1, hp, wp).sigmoid()
    b = boxes.float()
    # the pixels whose centre c + 0.5 lies in [x1, x2], clipped to the image
    first = torch.ceil(b[:, :2] - 0.5).clamp(min=0)
    last = (torch.floor(b[:, 2:] - 0.5) + 1).clamp(max=torch.tensor([ow, oh], device=b.device))
    # output pixel centre → input pixels → prototype cells (edges at integers) → grid_sample's [-1, 1]
    gx = (torch.arange(ow, device=b.device) + 0.5) * (w / ow / proto_stride / wp * 2) - 1
    gy = (torch.arange(oh, device=b.device) + 0.5) * (h / oh / proto_stride / hp * 2) - 1
    for i, (x0, y0, x1, y1) in enumerate(torch.cat([first, last], 1).long().tolist()):
        if x1 <= x0 or y1 <= y0:
            continue
        grid = torch.stack(torch.broadcast_tensors(gx[None, x0:x1], gy[y0:y1, None]), -1)[None]
        window = F.grid_sample(prob[i:i + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
        masks[i, y0:y1, x0:x1] = window[0, 0] > mask_thr
    return masks


def _check_masks(targets: Sequence[dict]) -> None:
    for i, t in enumerate(targets):
        masks = t.get("masks")
        if masks is None:
            raise ValueError(f"YOLOSegHead trains on instance masks, but target {i} has no 'masks': build the "
                             "datasets with with_masks=True (tools/train.py does so for a mask head; for your own "
                             "dataset class, give it a with_masks argument; framework.protocols.Head)")
        num_boxes = t["boxes"].reshape(-1, 4).shape[0]
        if masks.dim() != 3 or masks.shape[0] != num_boxes:
            raise ValueError(f"target {i}: 'masks' has shape {tuple(masks.shape)} for {num_boxes} boxes; each box "
                             "needs its [h, w] mask, in the pixels of its image")


class YOLOSegHead(YOLOHead):
    """`YOLOHead` plus prototype masks (see the module docstring); predictions add `masks` per image.

    Args:
        num_classes … nms_type: as `YOLOHead` (the same defaults).
        num_protos: prototype maps, and coefficients per point (YOLOv8-seg: 32).
        proto_channels: width of the prototype module; None: the finest neck level's width (YOLOv8-seg's 256 ×
            width factor, which equals it at every size).
        coef_channels: width of the coefficient branches; None: YOLOv8-seg's max(c // 4, num_protos), c the finest
            level's width (or `feat_channels` when that is set).
        mask_loss: a per-instance mask loss (`MaskBCELoss`, `DiceLoss`, `BCEDiceLoss`; `on_masks`); default
            `MaskBCELoss(loss_weight=7.5)`: YOLOv8-seg weighs its mask loss with the box gain, 7.5.
        mask_loss_size: side of the RoIAlign grid on which each positive's box is scored (Mask R-CNN's 28).
        mask_thr: probability above which a pixel belongs to a predicted mask.
    """

    needs_masks = True

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
        num_protos: int = 32,
        proto_channels: int | None = None,
        coef_channels: int | None = None,
        mask_loss: nn.Module | None = None,
        mask_loss_size: int = 28,
        mask_thr: float = 0.5,
    ) -> None:
        super().__init__(num_classes, in_channels, strides, feat_channels, stacked_convs, reg_max, cls_loss,
                         box_loss, dfl_loss, topk, alpha, beta, assigner_iou, prior_prob, box_bias, init_distance,
                         score_thr, nms_pre, nms_iou_thr, max_per_img, nms_type)
        if num_protos < 1 or mask_loss_size < 1:
            raise ValueError(f"num_protos and mask_loss_size must be >= 1, got {num_protos} and {mask_loss_size}")
        if not 0.0 < mask_thr < 1.0:
            raise ValueError(f"mask_thr must be in (0, 1), got {mask_thr}")
        if self.strides[0] % 2:
            raise ValueError(f"YOLOSegHead puts its prototypes at half the finest stride, which must be even; got "
                             f"strides {self.strides}")
        mask_loss = mask_loss or MaskBCELoss(loss_weight=7.5)
        if not getattr(mask_loss, "on_masks", False):
            raise ValueError(f"YOLOSegHead.mask_loss must be a mask loss (MaskBCELoss, DiceLoss, BCEDiceLoss: "
                             f"model/head/mask_loss=bce|dice|bce_dice), got {type(mask_loss).__name__}")
        self.mask_loss = mask_loss
        self.num_protos, self.mask_loss_size, self.mask_thr = int(num_protos), int(mask_loss_size), float(mask_thr)
        self.proto_stride = self.strides[0] // 2
        channels = [int(in_channels)] * len(self.strides) if isinstance(in_channels, int) else \
            [int(c) for c in in_channels]
        coef_width = coef_channels or feat_channels or max(channels[0] // 4, self.num_protos)
        self.coef_branches = nn.ModuleList(_branch(c, coef_width, stacked_convs, self.num_protos) for c in channels)
        self.proto = PrototypeNet(channels[0], proto_channels or channels[0], self.num_protos)

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[tuple[int, int]], Tensor, Tensor]:
        """`YOLOHead`'s outputs (class logits, box outputs, level sizes), then the mask coefficients `[B, P,
        num_protos]` (points in the same order) and the prototypes `[B, num_protos, 2H, 2W]` of the finest level."""
        cls_logits, box_out, sizes = super().forward(feats)
        coefs = torch.cat([b(f).flatten(2).transpose(1, 2) for f, b in zip(feats, self.coef_branches)], 1)
        return cls_logits, box_out, sizes, coefs, self.proto(feats[0])

    # --- training ----------------------------------------------------------------------------------------------

    def loss(self, feats: Sequence[Tensor], targets: Sequence[dict],
             image_sizes: Sequence[tuple[int, int]] | None = None) -> dict[str, Tensor]:
        """`YOLOHead`'s losses plus `loss_mask`. Every target needs `masks` (uint8 `[N, h, w]`, aligned with its
        boxes), which the datasets give when built with `with_masks=True` (engine.build does so for this head)."""
        cls_logits, box_out, sizes, coefs, protos = self(feats)
        losses, assigned = self.detection_losses(cls_logits, box_out, sizes, targets)
        losses["loss_mask"] = self.mask_losses(coefs, protos, assigned, targets)
        return losses

    def mask_losses(self, coefs: Tensor, protos: Tensor, assigned: DynamicAssignment,
                    targets: Sequence[dict]) -> Tensor:
        """`mask_loss` summed over the positives (each scored inside its ground-truth box, module docstring), divided
        by their number; zero, with a graph, when there are none."""
        _check_masks(targets)
        fg = assigned.fg_mask
        num_pos = int(fg.sum())
        if num_pos == 0:
            return (coefs.sum() + protos.sum()) * 0.0
        size = self.mask_loss_size
        gt_crops, counts = self._target_crops(targets, protos.device)  # [G, S, S], gts per image
        image_idx, _ = fg.nonzero(as_tuple=True)
        gt_flat = (counts.cumsum(0) - counts)[image_idx] + assigned.gt_index[fg]  # the positive's gt among all G
        # the prototypes cropped once per gt box (not per positive: ~topk positives share one), then mixed
        gt_boxes = torch.cat([t["boxes"].to(protos.device, torch.float32).reshape(-1, 4) for t in targets])
        gt_image = torch.repeat_interleave(torch.arange(len(targets), device=protos.device), counts)
        rois = torch.cat([gt_image[:, None].float(), gt_boxes], 1)
        proto_crops = roi_align(protos.float(), rois, size, spatial_scale=1.0 / self.proto_stride,
                                sampling_ratio=-1, aligned=True)  # [G, M, S, S]
        logits = torch.einsum("nm,nmhw->nhw", coefs[fg].float(), proto_crops[gt_flat])
        return self.mask_loss(logits, gt_crops[gt_flat]) / num_pos

    def _target_crops(self, targets: Sequence[dict], device: torch.device) -> tuple[Tensor, Tensor]:
        """Each ground-truth mask inside its own box, resampled to `mask_loss_size`² (soft values at the edges),
        all images' gts concatenated, and the number of gts of each image. One RoIAlign per image: masks of
        different images have different sizes, and padding them all to one would cost B × M full-size maps."""
        size, crops, counts = self.mask_loss_size, [], []
        for t in targets:
            boxes = t["boxes"].to(device, torch.float32).reshape(-1, 4)
            counts.append(len(boxes))
            if len(boxes):
                index = torch.arange(len(boxes), device=device, dtype=torch.float32)[:, None]
                crops.append(roi_align(t["masks"].to(device, torch.float32)[:, None], torch.cat([index, boxes], 1),
                                       size, sampling_ratio=-1, aligned=True)[:, 0])
        counts_t = torch.tensor(counts, dtype=torch.long, device=device)
        return (torch.cat(crops) if crops else torch.zeros(0, size, size, device=device)), counts_t

    # --- inference ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self, feats: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
        orig_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, Tensor]]:
        """`YOLOHead`'s detections, each with a bool mask `[H, W]` at `orig_sizes[i]` (else `image_sizes[i]`):
        the kept points' coefficients mixed with the image's prototypes (`paste_prototype_masks`)."""
        cls_logits, box_out, sizes, coefs, protos = self(feats)
        dets = self.detections(cls_logits, box_out, sizes, image_sizes, orig_sizes, extras={"coefficients": coefs})
        for i, det in enumerate(dets):
            out_size = orig_sizes[i] if orig_sizes is not None else image_sizes[i]
            det["masks"] = self.paste_masks(det.pop("coefficients"), protos[i], det["boxes"], image_sizes[i],
                                            out_size)
        return dets

    def paste_masks(self, coefficients: Tensor, prototypes: Tensor, boxes: Tensor, image_size: Sequence[int],
                    out_size: Sequence[int]) -> Tensor:
        """`paste_prototype_masks` with this head's prototype stride and threshold: bool masks `[N, *out_size]`
        from one image's coefficients `[N, M]`, prototypes `[M, h, w]` and boxes in `out_size` pixels. The ONNX
        check rebuilds masks from the exported outputs with it (`framework.protocols.ExportableHead`)."""
        return paste_prototype_masks(coefficients, prototypes, boxes, image_size, out_size, self.proto_stride,
                                     self.mask_thr)

    def dense_predictions(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[int]]:
        return self.dense_mask_predictions(feats)[:3]

    def dense_mask_predictions(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[int], Tensor, Tensor]:
        """`dense_predictions` (every point's box and class probabilities, the points per level), then every
        point's mask coefficients `[B, P, M]` and the prototypes `[B, M, H / 4, W / 4]`: what the ONNX export runs
        before selecting detections and their coefficients."""
        cls_logits, box_out, sizes, coefs, protos = self(feats)
        return (*self.decode_dense(cls_logits, box_out, sizes), coefs, protos)


__all__ = ["PrototypeNet", "YOLOSegHead", "paste_prototype_masks"]
