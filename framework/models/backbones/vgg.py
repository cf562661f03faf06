"""VGG backbones (VGG-16 with batch norm by default) from torchvision's layer definitions and weights.

We build torchvision's `features` with `torchvision.models.vgg.make_layers`, and load the `features.*` part of
torchvision's checkpoints into it, instead of calling `torchvision.models.vgg16_bn()`: that would also build the
102 M-parameter classifier only to throw it away (about 4 s on a CPU at every construction). Parameter names are
torchvision's (`features.<n>.*`), so its weights load as they are.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn
from torchvision.models import vgg

from framework.models.backbones.base import (
    Backbone, check_frozen_stages, check_out_indices, explain_download_errors, load_torchvision_weights, stage_stride,
)

_CFGS = {11: "A", 13: "B", 16: "D", 19: "E"}


def _init_like_torchvision(features: nn.Sequential) -> None:
    """The initialization `torchvision.models.VGG(init_weights=True)` gives these layers."""
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VGG(Backbone):
    """The convolutional part of VGG, returning the output of the pooling-bounded blocks in `out_indices`.

    Stages (each ends with its max-pool, so stage i has stride 2**(i + 1); channels for VGG-16):

    ========  ===================  ======  ========
    stage     VGG block            stride  channels
    ========  ===================  ======  ========
    0 (stem)  conv1_x + pool1      2       64
    1         conv2_x + pool2      4       128
    2         conv3_x + pool3      8       256
    3         conv4_x + pool4      16      512
    4         conv5_x + pool5      32      512
    ========  ===================  ======  ========

    Args:
        depth: 11, 13, 16 or 19.
        batch_norm: the `_bn` variant (BatchNorm after every convolution).
        out_indices: stages to return; (2, 3, 4) gives strides 8, 16, 32. Blocks after the last are not built.
        frozen_stages: -1 trains everything; 0 freezes block 1; k freezes blocks 1..k+1 (stem and stages 1..k).
        norm_eval: keep BatchNorm layers in eval mode while training (only matters with `batch_norm`).
        pretrained: False, True (torchvision's ImageNet weights) or a weights name ("IMAGENET1K_V1").
    """

    def __init__(
        self,
        depth: int = 16,
        batch_norm: bool = True,
        out_indices: Sequence[int] = (2, 3, 4),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pretrained: bool | str = False,
    ) -> None:
        super().__init__(frozen_stages, norm_eval)
        if depth not in _CFGS:
            raise ValueError(f"VGG depth must be one of {sorted(_CFGS)}, got {depth}")
        self.out_indices = check_out_indices(out_indices, range(1, 5))
        check_frozen_stages(frozen_stages, 4)
        arch = f"vgg{depth}_bn" if batch_norm else f"vgg{depth}"
        weights = load_torchvision_weights(arch, f"VGG{depth}{'_BN' if batch_norm else ''}_Weights", pretrained)
        features = vgg.make_layers(vgg.cfgs[_CFGS[depth]], batch_norm=batch_norm)
        if weights is None:
            _init_like_torchvision(features)
        else:
            with explain_download_errors(arch, weights):
                state = weights.get_state_dict(progress=True, check_hash=True)
            features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
        ends = [i + 1 for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        self._bounds = list(zip([0] + ends[:-1], ends))  # [start, end) of each stage in `features`
        last = max(self.out_indices)
        self.features = features[: ends[last]]  # slicing keeps torchvision's indices as parameter names
        self.depth = depth
        self.batch_norm = batch_norm
        self.out_channels = [self._channels(i) for i in self.out_indices]
        self.strides = [stage_stride(i) for i in self.out_indices]
        self._freeze()

    def _channels(self, stage: int) -> int:
        start, end = self._bounds[stage]
        return [m for m in self.features[start:end] if isinstance(m, nn.Conv2d)][-1].out_channels

    def stages(self) -> list[nn.Module]:
        return [self.features[start:end] for start, end in self._bounds[: max(self.out_indices) + 1]]
