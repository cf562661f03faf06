"""Feature Pyramid Network neck on top of torchvision's implementation.

torchvision's `FeaturePyramidNetwork` does the lateral/top-down part and its `LastLevelP6P7` the RetinaNet extra
levels; this class only adds what a config needs: the number of outputs, where P6 comes from, and the output
strides so the head can place anchors without repeating them in the config, and optionally an SPP/SPPF block on the
coarsest input (YOLO's receptive-field trick, see `framework.models.necks.spp`).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Literal, Sequence

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from framework.models.necks.spp import build_spp


class FPN(nn.Module):
    """FPN over the backbone outputs, plus 0-2 extra coarser levels.

    Args:
        in_channels: channels of each backbone output (Detector fills this from the backbone).
        out_channels: channels of every pyramid level.
        num_outs: number of levels returned; with C3-C5 in, 5 gives P3-P7 (RetinaNet), 4 gives P3-P6.
        extra_from: "c5" builds P6 from the last backbone map (RetinaNet paper), "p5" from the last FPN level
            (FCOS); with exactly one extra level P6 is a stride-2 max-pool of P5 (Faster R-CNN).
        in_strides: stride of each input; only used to report `strides` of the outputs.
        spp: "spp" or "sppf" applies that block (same width) to the last input before the pyramid, so P5 and the
            extra levels built from it see a wider context; None (default) leaves the FPN exactly as torchvision's
            (no `spp` submodule, identical state-dict keys).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 256,
        num_outs: int = 5,
        extra_from: Literal["c5", "p5"] = "c5",
        in_strides: Sequence[int] | None = None,
        spp: Literal["spp", "sppf"] | None = None,
    ) -> None:
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        n_extra = num_outs - len(in_channels)
        if n_extra not in (0, 1, 2):
            raise ValueError(f"FPN supports 0-2 extra levels; got num_outs={num_outs} for {len(in_channels)} inputs")
        if extra_from not in ("c5", "p5"):
            raise ValueError(f"extra_from must be 'c5' or 'p5', got {extra_from!r}")
        extra: nn.Module | None = None
        if n_extra == 1:
            extra = LastLevelMaxPool()
        elif n_extra == 2:
            extra = LastLevelP6P7(in_channels[-1] if extra_from == "c5" else out_channels, out_channels)
            # torchvision infers "use P5" from equal channel counts; make the choice explicit instead.
            extra.use_P5 = extra_from == "p5"
        self.spp = build_spp(spp, in_channels[-1])  # None adds no state-dict keys
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra)
        self.out_channels = out_channels
        in_strides = list(in_strides) if in_strides is not None else [2 ** (i + 3) for i in range(len(in_channels))]
        self.strides = in_strides + [in_strides[-1] * 2 ** (i + 1) for i in range(n_extra)]

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        if self.spp is not None:
            feats = [*feats[:-1], self.spp(feats[-1])]
        out = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))
        return list(out.values())
