"""The detector: backbone → neck → head, with the head owning losses and post-processing."""
from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn


class Detector(nn.Module):
    """Composes the three parts and wires their shapes so a config never repeats channel counts or strides.

    `neck` and `head` may be modules, or callables (e.g. `functools.partial`, or Hydra's `_partial_: true`) that
    are called with the sizes they depend on: the neck with `in_channels`/`in_strides` of the backbone outputs, the
    head with `in_channels`/`strides` of the neck outputs. Swapping `model/backbone=resnet18` then just works.

    Train mode: `forward(images, targets, image_sizes=…)` returns a dict of losses. Eval mode: `forward(images,
    image_sizes=…, orig_sizes=…)` returns per image `boxes` (XYXY, original pixels when `orig_sizes` is given),
    `scores` and `labels` (contiguous 0..K-1). `image_sizes` are the (h, w) of each image before padding (default:
    the padded size); heads use them to keep proposals and detections out of the padding.

    A head implements `loss(feats, targets, image_sizes)` and `predict(feats, image_sizes, orig_sizes)`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module | Callable[..., nn.Module],
        head: nn.Module | Callable[..., nn.Module],
    ) -> None:
        super().__init__()
        self.backbone = backbone
        if not isinstance(neck, nn.Module):
            neck = neck(in_channels=backbone.out_channels, in_strides=backbone.strides)
        self.neck = neck
        if not isinstance(head, nn.Module):
            head = head(in_channels=neck.out_channels, strides=neck.strides)
        self.head = head

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def extract_features(self, images: Tensor) -> list[Tensor]:
        return self.neck(self.backbone(images))

    def forward(
        self,
        images: Tensor,
        targets: Sequence[dict] | None = None,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        orig_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        feats = self.extract_features(images)
        if image_sizes is None:
            image_sizes = [tuple(images.shape[-2:])] * images.shape[0]
        if self.training:
            if targets is None:
                raise ValueError("Detector in train mode needs targets; call model.eval() for inference")
            return self.head.loss(feats, targets, image_sizes)
        return self.head.predict(feats, image_sizes, orig_sizes)
