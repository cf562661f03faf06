"""MobileNetV2 and MobileNetV3 backbones: torchvision's `features`, cut into stages at each stride-2 block.

We wrap torchvision's models so their ImageNet weights load as they are: the kept modules are torchvision's own,
under torchvision's parameter names (`features.<n>.*`). Stages are found where a block halves the resolution
rather than from hand-written index tables, so V2 and both V3 sizes are cut by the same rule.

The stride-32 stage ends with the last 1x1 convolution of `features` (1280 channels in V2, 960 in V3-Large, 576
in V3-Small) rather than at the last inverted-residual block (320 / 160 / 96 channels): that is the map
torchvision's own MobileNetV3 detectors (Faster R-CNN, SSDlite) take at stride 32, and the one the ImageNet
classifier of the pretrained weights was trained on.
"""
from __future__ import annotations

from typing import Literal, Sequence

from torch import nn

from framework.models.backbones.base import (
    Backbone, build_torchvision_model, check_frozen_stages, check_out_indices, stage_stride,
)


def _downsampling_blocks(features: nn.Sequential) -> list[int]:
    """Indices of the blocks that contain a stride-2 convolution (where a new stage starts)."""
    return [i for i, block in enumerate(features)
            if any(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in block.modules())]


class _MobileNet(Backbone):
    """Stage i of `features` runs from its i-th stride-2 block up to the next (stage 0, the stem, from the first
    convolution), so stage i has stride 2**(i + 1); the last stage runs to the end of `features`."""

    def __init__(
        self, features: nn.Sequential, out_indices: tuple[int, ...], frozen_stages: int, norm_eval: bool
    ) -> None:
        super().__init__(frozen_stages, norm_eval)
        self.out_indices = out_indices
        starts = _downsampling_blocks(features)
        if len(starts) != 5:
            raise ValueError(f"expected 5 stride-2 blocks in {type(self).__name__}'s features, found {len(starts)}")
        self._bounds = list(zip(starts, starts[1:] + [len(features)]))  # [start, end) of each stage
        last = max(self.out_indices)
        self.features = features[: self._bounds[last][1]]  # slicing keeps torchvision's indices as names
        # every torchvision MobileNet block (Conv2dNormActivation, InvertedResidual) records its out_channels
        self.out_channels = [self.features[self._bounds[i][1] - 1].out_channels for i in self.out_indices]
        self.strides = [stage_stride(i) for i in self.out_indices]
        self._freeze()

    def stages(self) -> list[nn.Module]:
        return [self.features[start:end] for start, end in self._bounds[: max(self.out_indices) + 1]]


class MobileNetV2(_MobileNet):
    """torchvision's MobileNetV2 returning the stages in `out_indices`.

    ========  ==================  ======  ========
    stage     features blocks     stride  channels
    ========  ==================  ======  ========
    0 (stem)  0-1                 2       16
    1         2-3                 4       24
    2         4-6                 8       32
    3         7-13                16      96
    4         14-18 (last conv)   32      1280
    ========  ==================  ======  ========

    Args:
        out_indices: stages to return, in 1..4; (2, 3, 4) gives strides 8, 16, 32. Later blocks are not built.
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and stages 1..k.
        norm_eval: keep BatchNorm layers in eval mode while training.
        pretrained: False, True (torchvision's default ImageNet weights) or a weights name ("IMAGENET1K_V2").
    """

    def __init__(
        self,
        out_indices: Sequence[int] = (2, 3, 4),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pretrained: bool | str = False,
    ) -> None:
        out_indices = check_out_indices(out_indices, range(1, 5))
        check_frozen_stages(frozen_stages, 4)
        net = build_torchvision_model("mobilenet_v2", "MobileNet_V2_Weights", pretrained)
        super().__init__(net.features, out_indices, frozen_stages, norm_eval)


class MobileNetV3(_MobileNet):
    """torchvision's MobileNetV3 (Large or Small) returning the stages in `out_indices`.

    ========  ===========================  ===========================  ======
    stage     Large: blocks / channels     Small: blocks / channels     stride
    ========  ===========================  ===========================  ======
    0 (stem)  0-1 / 16                     0 / 16                       2
    1         2-3 / 24                     1 / 16                       4
    2         4-6 / 40                     2-3 / 24                     8
    3         7-12 / 112                   4-8 / 48                     16
    4         13-16 (last conv) / 960      9-12 (last conv) / 576       32
    ========  ===========================  ===========================  ======

    Args:
        variant: "large" or "small".
        out_indices: stages to return, in 1..4; (2, 3, 4) gives strides 8, 16, 32. Later blocks are not built.
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and stages 1..k.
        norm_eval: keep BatchNorm layers in eval mode while training.
        pretrained: False, True (torchvision's default ImageNet weights) or a weights name ("IMAGENET1K_V1").
        bn_momentum: torchvision builds MobileNetV3 with BatchNorm momentum 0.01, tuned for long ImageNet runs; the
            running statistics then trail the weights for thousands of iterations, and a detector trained from
            scratch for a short schedule evaluates with stale statistics (shapes mAP 0.0 after one epoch, where 0.1
            learns). 0.1 (PyTorch's default) unless set; None keeps torchvision's value.
    """

    def __init__(
        self,
        variant: Literal["large", "small"] = "large",
        out_indices: Sequence[int] = (2, 3, 4),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pretrained: bool | str = False,
        bn_momentum: float | None = 0.1,
    ) -> None:
        if variant not in ("large", "small"):
            raise ValueError(f"MobileNetV3 variant must be 'large' or 'small', got {variant!r}")
        out_indices = check_out_indices(out_indices, range(1, 5))
        check_frozen_stages(frozen_stages, 4)
        net = build_torchvision_model(f"mobilenet_v3_{variant}", f"MobileNet_V3_{variant.title()}_Weights", pretrained)
        if bn_momentum is not None:
            for m in net.features.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = bn_momentum
        super().__init__(net.features, out_indices, frozen_stages, norm_eval)
        self.variant = variant
