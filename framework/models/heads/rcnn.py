"""Faster R-CNN as a head: an RPN proposes, a RoI box head classifies and refines (Ren et al.).

It plugs into `Detector` like the one-stage heads: `loss(feats, targets, image_sizes)` and `predict(...)`. The two
stages are their own classes (`RPNHead`, `RoIBoxHead`) built from partials, so a config can change either; the
head's `cls_loss`/`box_loss` are the second stage's, so `model/head/box_loss=giou` means the same as elsewhere.
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn

from framework.models.heads.roi import RoIBoxHead
from framework.models.heads.rpn import RPNHead


class FasterRCNNHead(nn.Module):
    """Args:
        num_classes: foreground classes (the box head adds a background slot).
        in_channels, strides: from the neck; the RPN runs on every level, RoIAlign on the first `roi.num_levels`.
        rpn: an `RPNHead` or a callable building one from `in_channels` and `strides`.
        roi: a `RoIBoxHead` or a callable building one from `num_classes`, `in_channels`, `cls_loss`, `box_loss`.
        cls_loss, box_loss: the box head's losses (None: its defaults, cross-entropy and smooth L1).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int | Sequence[int] = 256,
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        rpn: RPNHead | Callable[..., RPNHead] | None = None,
        roi: RoIBoxHead | Callable[..., RoIBoxHead] | None = None,
        cls_loss: nn.Module | None = None,
        box_loss: nn.Module | None = None,
    ) -> None:
        super().__init__()
        rpn = rpn if rpn is not None else RPNHead
        roi = roi if roi is not None else RoIBoxHead
        self.rpn = rpn if isinstance(rpn, nn.Module) else rpn(in_channels=in_channels, strides=strides)
        self.roi = roi if isinstance(roi, nn.Module) else roi(num_classes=num_classes, in_channels=in_channels,
                                                               strides=strides, cls_loss=cls_loss, box_loss=box_loss)
        self.num_classes = self.roi.num_classes

    def _proposals(self, feats: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]]
                   ) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        objectness, deltas, sizes = self.rpn(feats)
        anchors = self.rpn.anchor_generator.grid_anchors(sizes, objectness.device)
        return objectness, deltas, anchors, self.rpn.proposals(objectness, deltas, anchors, sizes, image_sizes)

    def loss(self, feats: Sequence[Tensor], targets: Sequence[dict],
             image_sizes: Sequence[tuple[int, int]]) -> dict[str, Tensor]:
        objectness, deltas, anchors, proposals = self._proposals(feats, image_sizes)
        losses = self.rpn.loss(objectness, deltas, anchors, targets)
        losses.update(self.roi.loss(feats, proposals, targets, image_sizes))
        return losses

    def predict(self, feats: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
                orig_sizes: Sequence[tuple[int, int]] | None = None) -> list[dict[str, Tensor]]:
        *_, proposals = self._proposals(feats, image_sizes)
        return self.roi.predict(feats, proposals, image_sizes, orig_sizes)
