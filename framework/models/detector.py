"""The detector: backbone → neck → head, with the head owning losses and post-processing."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from torch import Tensor, nn


def _depth_from_backbone(make_neck: Callable[..., nn.Module], backbone: nn.Module) -> dict[str, Any]:
    """`{"depth": backbone.neck_depth}` for a neck callable whose `depth` is left None, else nothing.

    YOLO scales its neck's CSP blocks with the backbone's size (3 × deepen_factor), so a CSPDarknet says what its
    size implies (`neck_depth`) and a neck partial asks for it by leaving `depth` unset; an explicit depth wins."""
    depth = getattr(backbone, "neck_depth", None)
    try:
        param = inspect.signature(make_neck).parameters.get("depth")
    except (TypeError, ValueError):  # a callable without an inspectable signature
        return {}
    return {"depth": depth} if depth is not None and param is not None and param.default is None else {}


class Detector(nn.Module):
    """Composes the three parts and wires their shapes so a config never repeats channel counts or strides.

    `neck` and `head` may be modules, or callables (e.g. `functools.partial`, or Hydra's `_partial_: true`) that
    are called with the sizes they depend on: the neck with `in_channels`/`in_strides` of the backbone outputs (and
    `depth`, when the neck leaves it None and the backbone has a `neck_depth`, as CSPDarknet's size implies), the
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
            neck = neck(in_channels=backbone.out_channels, in_strides=backbone.strides,
                        **_depth_from_backbone(neck, backbone))
        self.neck = neck
        if not isinstance(head, nn.Module):
            head = head(in_channels=neck.out_channels, strides=neck.strides)
        self.head = head

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def needs_masks(self) -> bool:
        """Whether the head trains on instance masks (and predicts them): the data loads masks only then."""
        return bool(getattr(self.head, "needs_masks", False))

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
