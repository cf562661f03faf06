"""SE-ResNet (Hu et al., "Squeeze-and-Excitation Networks", 2018): ResNet bottlenecks with channel attention.

Hand-written because torchvision has no SE-ResNet model (and so no weights for one): only the pieces. We reuse
them: `torchvision.ops.SqueezeExcitation` is exactly the paper's SE module (global average pool, 1x1 conv reduce,
ReLU, 1x1 conv expand, sigmoid, scale), and `torchvision.models.resnet.ResNet(block, layers)` builds the network
around our block, so stem, stages, initialization and parameter names are torchvision's. The parameter names also
match timm's `seresnet50` (`layerX.Y.se.fc1/fc2`), which does ship ImageNet weights: use the timm backbone for a
pretrained SE-ResNet.
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet
from torchvision.ops import SqueezeExcitation as TorchvisionSqueezeExcitation

from framework.models.backbones.base import PretrainedWeightsError, check_frozen_stages, check_out_indices
from framework.models.backbones.resnet import ResNetTrunk

_LAYERS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


class SqueezeExcitation(TorchvisionSqueezeExcitation):
    """SE module sized by the paper's reduction ratio r: `channels -> channels // r -> channels` (r = 16)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__(channels, channels // reduction)


class SEBottleneck(Bottleneck):
    """torchvision's Bottleneck with SE applied to the residual branch (after bn3), before the identity is added,
    as in Fig. 3 of the paper. Same constructor as Bottleneck, so torchvision's `ResNet._make_layer` can build it."""

    reduction = 16

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__(inplanes, planes, stride, downsample, groups, base_width, dilation, norm_layer)
        self.se = SqueezeExcitation(planes * self.expansion, self.reduction)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


class SEResNet(ResNetTrunk):
    """SE-ResNet-50/101/152 trunk returning the stages in `out_indices` (same numbering as `ResNet`: stage 0 the
    stem at stride 4, stage i = `layer<i>` at stride 2**(i + 1); (2, 3, 4) gives C3-C5 at 8, 16, 32).

    Args:
        depth: 50, 101 or 152.
        out_indices, frozen_stages, norm_eval: as for `ResNet`.
        pretrained: must be False: torchvision has no SE-ResNet weights. For ImageNet-pretrained SE-ResNet-50 use
            the timm backbone (`model/backbone=timm model.backbone.model_name=seresnet50`).
    """

    def __init__(
        self,
        depth: int = 50,
        out_indices: Sequence[int] = (2, 3, 4),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pretrained: bool | str = False,
    ) -> None:
        if depth not in _LAYERS:
            raise ValueError(f"SEResNet depth must be one of {sorted(_LAYERS)}, got {depth}")
        if pretrained:
            raise PretrainedWeightsError(
                "SEResNet has no pretrained weights: torchvision ships none for SE-ResNet. For an ImageNet-pretrained "
                "SE-ResNet-50 use the timm backbone: model/backbone=timm model.backbone.model_name=seresnet50 "
                'model.backbone.pretrained=true (needs pip install "framework[timm]"), or set '
                "model.backbone.pretrained=false."
            )
        out_indices = check_out_indices(out_indices, range(1, 5))
        check_frozen_stages(frozen_stages, 4)
        super().__init__(TorchvisionResNet(SEBottleneck, _LAYERS[depth]), out_indices, frozen_stages, norm_eval)
        self.depth = depth
