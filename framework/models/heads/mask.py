"""Mask R-CNN (He et al.): Faster R-CNN plus a small FCN that predicts a mask inside each detected box.

The mask stage is torchvision's `maskrcnn_resnet50_fpn` (v1) layer for layer, so its weights load one-to-one:
multi-scale RoIAlign 14×14 over P2–P5, four 3×3 convolutions with ReLU (`mask_head`), a 2×2 stride-2 transposed
convolution with ReLU and a 1×1 convolution to K + 1 class-specific 28×28 mask logits (`mask_predictor`; slot 0,
background, is never trained or read, and is kept only for the weight layout).

Training reuses the box stage's draw (`RoIBoxHead.sample`): the mask loss is taken on its positives, against the
matched ground-truth mask cropped to the RoI (`ops.masks.mask_targets`), on the logits of the ground-truth class,
divided by the number of positives (torchvision's mean BCE over the positives' pixels with the default loss).
Inference runs on the final detections: their masks are pooled from the boxes in network-input pixels, read at the
predicted class and pasted into the image at its original size.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from framework.models.heads.common import uniform_channels
from framework.models.heads.rcnn import FasterRCNNHead
from framework.models.heads.roi import RoIBoxHead, RoISamples
from framework.models.heads.rpn import RPNHead
from framework.models.losses import MaskBCELoss
from framework.models.ops.masks import mask_targets, paste_masks
from framework.models.ops.postprocess import rescale_detections
from framework.models.ops.roi_align import LevelRoIAlign


class RoIMaskHead(nn.Module):
    """Per-class mask logits for boxes, the loss against ground-truth masks, and the masks of detections.

    Args:
        num_classes: foreground classes K; the predictor has K + 1 outputs (slot 0 background, unused).
        in_channels: channels of the pyramid levels.
        num_levels, strides: RoIAlign pools from the first `num_levels` levels, whose strides set its scales.
        output_size, sampling_ratio: RoIAlign grid (14×14, 2 samples per bin); the masks are twice as large.
        conv_channels: width of each 3×3 convolution of the FCN (torchvision: four of 256).
        mask_loss: scores the `[P, 28, 28]` logits against targets in [0, 1] and returns the sum over instances
            (`MaskBCELoss`, `DiceLoss`, `BCEDiceLoss`); None: `MaskBCELoss`.
        mask_thr: probability above which a pasted pixel belongs to the mask (torchvision's users: 0.5).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int | Sequence[int] = 256,
        num_levels: int = 4,
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        output_size: int = 14,
        sampling_ratio: int = 2,
        conv_channels: Sequence[int] = (256, 256, 256, 256),
        mask_loss: nn.Module | None = None,
        mask_thr: float = 0.5,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        channels = uniform_channels(in_channels, "RoIMaskHead")
        if len(strides) < num_levels:
            raise ValueError(f"RoIMaskHead pools from num_levels={num_levels} levels but the neck has {len(strides)} "
                             f"(strides {list(strides)})")
        if not conv_channels:
            raise ValueError("RoIMaskHead.conv_channels needs at least one convolution width")
        mask_loss = mask_loss if mask_loss is not None else MaskBCELoss()
        if not getattr(mask_loss, "on_masks", False):
            raise ValueError(f"RoIMaskHead.mask_loss must be a mask loss (MaskBCELoss, DiceLoss, BCEDiceLoss: "
                             f"model/head/mask_loss=bce|dice|bce_dice), got {type(mask_loss).__name__}")
        self.num_classes, self.mask_thr = num_classes, float(mask_thr)
        self.pooler = LevelRoIAlign(strides[:num_levels], output_size, sampling_ratio)
        layers: list[nn.Module] = []
        for width in conv_channels:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
        self.convs = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.logits = nn.Conv2d(channels, num_classes + 1, 1)
        for m in self.modules():  # torchvision's MaskRCNNHeads / MaskRCNNPredictor initialization
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.mask_loss = mask_loss

    def forward(self, feats: Sequence[Tensor], boxes: Sequence[Tensor]) -> Tensor:
        """Mask logits `[R, K+1, 2S, 2S]` for the boxes of all images (input pixels), concatenated in order."""
        x = self.convs(self.pooler(feats, boxes))
        return self.logits(F.relu(self.deconv(x)))

    def loss(self, feats: Sequence[Tensor], samples: RoISamples, targets: Sequence[dict[str, Any]]
             ) -> dict[str, Tensor]:
        gt_masks = []
        for i, t in enumerate(targets):
            if "masks" not in t:
                raise ValueError(f"target {i} has no `masks`: a mask head trains on instance masks, which the dataset "
                                 "gives when built with with_masks=True (tools/train.py does it for a mask head)")
            gt_masks.append(t["masks"])
        pos = samples.is_pos
        rois, image_of = samples.rois[pos], samples.image_of[pos]
        counts = torch.bincount(image_of, minlength=len(targets)).tolist()
        logits = self(feats, rois.split(counts))
        if len(rois) == 0:  # keep every parameter in the graph (DDP) with a zero loss
            return {"loss_mask": logits.sum() * 0}
        labels = samples.labels[pos]  # class k + 1: the predictor's slot of class k
        chosen = logits[torch.arange(len(rois), device=rois.device), labels]
        goal = mask_targets(gt_masks, rois, image_of, samples.matched[pos], logits.shape[-1])
        return {"loss_mask": self.mask_loss(chosen, goal) / len(rois)}

    @torch.no_grad()
    def predict(self, feats: Sequence[Tensor], detections: list[dict[str, Tensor]],
                image_sizes: Sequence[tuple[int, int]], orig_sizes: Sequence[tuple[int, int]] | None = None
                ) -> list[dict[str, Tensor]]:
        """Add `masks` (bool `[N, H, W]` at `orig_sizes`, else `image_sizes`) to detections whose boxes are still in
        network-input pixels, and map their boxes to `orig_sizes` as the box heads do."""
        boxes = [d["boxes"] for d in detections]
        num = sum(len(b) for b in boxes)
        if num:
            labels = torch.cat([d["labels"] for d in detections])
            logits = self(feats, boxes)
            probs = logits[torch.arange(num, device=logits.device), labels + 1].float().sigmoid()
        else:
            probs = feats[0].new_zeros((0, 1, 1), dtype=torch.float32)
        detections = rescale_detections(detections, image_sizes, orig_sizes)
        sizes = orig_sizes if orig_sizes is not None else image_sizes
        for det, p, size in zip(detections, probs.split([len(b) for b in boxes]), sizes):
            det["masks"] = paste_masks(p, det["boxes"], size, self.mask_thr)
        return detections


class MaskRCNNHead(FasterRCNNHead):
    """Faster R-CNN with a RoI mask stage: `loss` adds `loss_mask`, `predict` adds `masks` per image.

    Args:
        num_classes, in_channels, strides, rpn, roi, cls_loss, box_loss: as `FasterRCNNHead`.
        mask: a `RoIMaskHead` or a callable building one from `num_classes`, `in_channels`, `strides`, `mask_loss`.
        mask_loss: the mask stage's loss (None: its default, `MaskBCELoss`).
    """

    needs_masks = True

    def __init__(
        self,
        num_classes: int,
        in_channels: int | Sequence[int] = 256,
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        rpn: RPNHead | Callable[..., RPNHead] | None = None,
        roi: RoIBoxHead | Callable[..., RoIBoxHead] | None = None,
        mask: RoIMaskHead | Callable[..., RoIMaskHead] | None = None,
        cls_loss: nn.Module | None = None,
        box_loss: nn.Module | None = None,
        mask_loss: nn.Module | None = None,
    ) -> None:
        super().__init__(num_classes, in_channels, strides, rpn, roi, cls_loss, box_loss)
        mask = mask if mask is not None else RoIMaskHead
        self.mask = mask if isinstance(mask, nn.Module) else mask(num_classes=num_classes, in_channels=in_channels,
                                                                  strides=strides, mask_loss=mask_loss)
        if self.mask.num_classes != self.num_classes:
            raise ValueError(f"MaskRCNNHead: the mask head has {self.mask.num_classes} classes but the box head "
                             f"{self.num_classes}")

    def loss(self, feats: Sequence[Tensor], targets: Sequence[dict],
             image_sizes: Sequence[tuple[int, int]]) -> dict[str, Tensor]:
        objectness, deltas, anchors, proposals = self._proposals(feats, image_sizes)
        losses = self.rpn.loss(objectness, deltas, anchors, targets)
        samples = self.roi.sample(proposals, targets)
        losses.update(self.roi.loss(feats, proposals, targets, image_sizes, samples))
        losses.update(self.mask.loss(feats, samples, targets))
        return losses

    def predict(self, feats: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
                orig_sizes: Sequence[tuple[int, int]] | None = None) -> list[dict[str, Tensor]]:
        *_, proposals = self._proposals(feats, image_sizes)
        detections = self.roi.predict(feats, proposals, image_sizes)  # boxes stay in input pixels for the masks
        return self.mask.predict(feats, detections, image_sizes, orig_sizes)
