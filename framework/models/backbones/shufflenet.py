"""ShuffleNetV2 backbone wrapping torchvision's model, so its ImageNet weights load as they are (the kept modules
are torchvision's, under torchvision's names: `conv1`, `stage2`, `stage3`, `stage4`)."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from framework.models.backbones.base import (
    Backbone, build_torchvision_model, check_frozen_stages, check_out_indices, stage_stride,
)

_WIDTHS = {0.5: "x0_5", 1.0: "x1_0", 1.5: "x1_5", 2.0: "x2_0"}


class ShuffleNetV2(Backbone):
    """torchvision's ShuffleNetV2 returning the stages in `out_indices`.

    ShuffleNetV2 has no block at stride 4: its stem is a stride-2 convolution and a max-pool, then stage2..stage4.
    To keep the numbering of the other backbones (stage i at stride 2**(i + 1)), the max-pool is stage 1:

    ========  ===========  ======  ===============================
    stage     module       stride  channels (x0.5/x1.0/x1.5/x2.0)
    ========  ===========  ======  ===============================
    0 (stem)  conv1        2       24
    1         maxpool      4       24
    2         stage2       8       48 / 116 / 176 / 244
    3         stage3       16      96 / 232 / 352 / 488
    4         stage4       32      192 / 464 / 704 / 976
    ========  ===========  ======  ===============================

    torchvision's `conv5` (a 1x1 convolution to 1024/2048 channels feeding the classifier) is not part of the
    backbone: the stride-32 output is stage4's.

    Args:
        width_mult: 0.5, 1.0, 1.5 or 2.0 (torchvision's shufflenet_v2_x0_5 ... x2_0).
        out_indices: stages to return, in 1..4; (2, 3, 4) gives stage2-stage4 at strides 8, 16, 32.
        frozen_stages: -1 trains everything; 0 freezes conv1 (1 is the same: the max-pool has no parameters);
            k >= 2 also freezes stage2..stage<k>.
        norm_eval: keep BatchNorm layers in eval mode while training.
        pretrained: False, True (torchvision's ImageNet weights) or a weights name ("IMAGENET1K_V1").
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        out_indices: Sequence[int] = (2, 3, 4),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pretrained: bool | str = False,
    ) -> None:
        super().__init__(frozen_stages, norm_eval)
        if width_mult not in _WIDTHS:
            raise ValueError(f"ShuffleNetV2 width_mult must be one of {sorted(_WIDTHS)}, got {width_mult}")
        self.out_indices = check_out_indices(out_indices, range(1, 5))
        check_frozen_stages(frozen_stages, 4)
        suffix = _WIDTHS[width_mult]
        net = build_torchvision_model(f"shufflenet_v2_{suffix}", f"ShuffleNet_V2_{suffix.upper()}_Weights", pretrained)
        self.conv1 = net.conv1
        self.maxpool = net.maxpool
        self.num_stages = max(self.out_indices)
        for i in range(2, self.num_stages + 1):
            setattr(self, f"stage{i}", getattr(net, f"stage{i}"))
        channels = [net._stage_out_channels[0]] + list(net._stage_out_channels[:4])  # per stage 0..4
        self.width_mult = width_mult
        self.out_channels = [channels[i] for i in self.out_indices]
        self.strides = [stage_stride(i) for i in self.out_indices]
        self._freeze()

    def stages(self) -> list[nn.Module]:
        return [self.conv1, self.maxpool] + [getattr(self, f"stage{i}") for i in range(2, self.num_stages + 1)]
