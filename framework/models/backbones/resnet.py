"""ResNet, ResNeXt and Wide ResNet backbones from torchvision, returning multi-scale feature maps.

We wrap torchvision's ResNet rather than writing our own so that its pretrained weights load as they are; what
torchvision lacks for detection is the choice of outputs, frozen stages and frozen batch-norm statistics.
"""
from __future__ import annotations

from typing import Iterator, Sequence

from torch import nn
from torchvision import models

from framework.models.backbones.base import (  # re-exported: framework.config.cli imports them from here
    Backbone, PretrainedWeightsError, build_torchvision_model, check_frozen_stages, check_out_indices,
    load_torchvision_weights, stage_stride,
)
from framework.models.backbones.frozen_norm import fold_frozen_norms

__all__ = ["ResNet", "ResNetTrunk", "PretrainedWeightsError", "load_torchvision_weights"]

# (depth, groups, width_per_group) -> torchvision builder and weights enum; each has ImageNet weights.
_ARCHS: dict[tuple[int, int, int], tuple[str, str]] = {
    (18, 1, 64): ("resnet18", "ResNet18_Weights"),
    (34, 1, 64): ("resnet34", "ResNet34_Weights"),
    (50, 1, 64): ("resnet50", "ResNet50_Weights"),
    (101, 1, 64): ("resnet101", "ResNet101_Weights"),
    (152, 1, 64): ("resnet152", "ResNet152_Weights"),
    (50, 32, 4): ("resnext50_32x4d", "ResNeXt50_32X4D_Weights"),
    (101, 32, 8): ("resnext101_32x8d", "ResNeXt101_32X8D_Weights"),
    (101, 64, 4): ("resnext101_64x4d", "ResNeXt101_64X4D_Weights"),
    (50, 1, 128): ("wide_resnet50_2", "Wide_ResNet50_2_Weights"),
    (101, 1, 128): ("wide_resnet101_2", "Wide_ResNet101_2_Weights"),
}


class ResNetTrunk(Backbone):
    """The stem and `layer1..layerN` of a built `torchvision.models.ResNet` (any block type), N = max(out_indices).

    Stage 0 is the stem (conv1, bn1, relu, maxpool: stride 4); stage i is torchvision's `layer<i>`, stride
    2**(i + 1): layer1 4, layer2 8, layer3 16, layer4 32. Layers after the last output are not kept, so there are
    no dead parameters and parameter counts are honest. Arguments are validated by the subclasses.
    """

    def __init__(
        self, net: models.ResNet, out_indices: tuple[int, ...], frozen_stages: int, norm_eval: bool,
        norm_frozen: bool = False,
    ) -> None:
        super().__init__(frozen_stages, norm_eval, norm_frozen)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.num_stages = max(out_indices)
        for i in range(1, self.num_stages + 1):
            setattr(self, f"layer{i}", getattr(net, f"layer{i}"))
        expansion = net.layer1[0].expansion  # 1 for BasicBlock, 4 for Bottleneck
        self.out_indices = out_indices
        self.out_channels = [64 * expansion * 2 ** (i - 1) for i in out_indices]
        self.strides = [stage_stride(i) for i in out_indices]
        self._freeze()
        if norm_frozen:
            fold_frozen_norms(self.conv_norm_pairs())

    def stages(self) -> list[nn.Module]:
        return [self.stem] + [getattr(self, f"layer{i}") for i in range(1, self.num_stages + 1)]

    def conv_norm_pairs(self) -> Iterator[tuple[nn.Module, nn.Module]]:
        """Each convolution with the BatchNorm layer that reads its output: the stem's, and in every block
        `conv<k>`/`bn<k>` and the shortcut's `downsample` (torchvision's wiring)."""
        yield self.stem[0], self.stem[1]
        for i in range(1, self.num_stages + 1):
            for block in getattr(self, f"layer{i}"):
                for k in (1, 2, 3):
                    if hasattr(block, f"conv{k}"):
                        yield getattr(block, f"conv{k}"), getattr(block, f"bn{k}")
                if block.downsample is not None:
                    yield block.downsample[0], block.downsample[1]


class ResNet(ResNetTrunk):
    """A torchvision ResNet / ResNeXt / Wide ResNet trunk that returns the outputs of the stages in `out_indices`.

    Args:
        depth: 18, 34, 50, 101 or 152.
        out_indices: which of `layer1..layer4` to return (1-based, as in torchvision's names; layer i has stride
            2**(i + 1)): (2, 3, 4) gives C3-C5 with strides 8, 16, 32.
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and layer1..layerk.
        norm_eval: keep BatchNorm layers in eval mode (running statistics frozen) while training, the usual choice
            with pretrained weights and small per-GPU batches. Leave it off when training from scratch.
        norm_frozen: also stop training BatchNorm's weight and bias (torchvision's FrozenBatchNorm2d, what its
            detectors use when fine-tuning ImageNet weights); implies norm_eval.
        pretrained: False, True (torchvision's default ImageNet weights) or a weights name such as
            "IMAGENET1K_V2". Downloading needs internet; the error says how to place the file by hand.
        groups, width_per_group: the bottleneck's grouped 3x3 convolution, as in torchvision: 1/64 is ResNet,
            32/4 ResNeXt-50 (32x4d) with depth 50, 32/8 or 64/4 ResNeXt-101, 1/128 Wide ResNet-50/101-2. Only the
            combinations torchvision ships weights for are accepted.
    """

    def __init__(
        self,
        depth: int = 50,
        out_indices: Sequence[int] = (2, 3, 4),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pretrained: bool | str = False,
        groups: int = 1,
        width_per_group: int = 64,
        norm_frozen: bool = False,
    ) -> None:
        depths = sorted({d for d, _, _ in _ARCHS})
        if depth not in depths:
            raise ValueError(f"ResNet depth must be one of {depths}, got {depth}")
        if (depth, groups, width_per_group) not in _ARCHS:
            known = ", ".join(f"{d}/{g}/{w} ({a})" for (d, g, w), (a, _) in _ARCHS.items())
            raise ValueError(f"ResNet has no architecture depth={depth}, groups={groups}, width_per_group="
                             f"{width_per_group}; known depth/groups/width_per_group: {known}")
        out_indices = check_out_indices(out_indices, range(1, 5))
        check_frozen_stages(frozen_stages, 4)
        arch, weights_enum = _ARCHS[depth, groups, width_per_group]
        net = build_torchvision_model(arch, weights_enum, pretrained)
        super().__init__(net, out_indices, frozen_stages, norm_eval, norm_frozen)
        self.depth = depth
        self.groups = groups
        self.width_per_group = width_per_group
