"""CSPDarknet, the backbone of YOLOv5 (≥ 6.0) and YOLOv8, written from the blocks in `framework.models.blocks`.

torchvision has no CSPDarknet and there are no torchvision-format pretrained weights for it, so it is hand-written
and trained from scratch here (hence no `pretrained` argument; YOLOv8 weights come in through
`tools/convert_ultralytics.py`). Layout, for widths capped at `max_channels`, then × `widen_factor`, and block
counts × `deepen_factor`:

    stage 0  stem     ConvNormAct 3→64, stride 2 (kernel 6 for v5, 3 for v8)            stride 2
    stage 1  ConvNormAct 64→128 stride 2 + CSP ×3                                        stride 4   (C2)
    stage 2  ConvNormAct 128→256 stride 2 + CSP ×6                                       stride 8   (C3)
    stage 3  ConvNormAct 256→512 stride 2 + CSP ×9 (v5) / ×6 (v8)                        stride 16  (C4)
    stage 4  ConvNormAct 512→1024 stride 2 + CSP ×3 + SPPF                               stride 32  (C5)

CSP is `C3` for `arch="v5"` and `C2f` for `arch="v8"`, both with residual bottlenecks in the backbone. Stage
numbering and freezing follow `framework.models.backbones.base`, so `out_indices=(2, 3, 4)` is C3-C5 as for ResNet.
With `arch="v8"` and a `size`, the module tree is ultralytics' YOLOv8 backbone layer for layer (layers 0-9), which
is what makes its weights convertible one to one.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

from torch import nn

from framework.models.backbones.base import Backbone, check_frozen_stages, check_out_indices, stage_stride
from framework.models.blocks import ConvNormAct, csp_block
from framework.models.necks.spp import SPPF

# (deepen_factor, widen_factor, max_channels) of each model size: YOLOv8's are ultralytics' yolov8.yaml scales, whose
# width cap keeps the last stage at 512 (l/x) or 768 (m) channels before widening; YOLOv5's have no cap and a
# deeper x.
SIZES: dict[str, dict[str, tuple[float, float, int | None]]] = {
    "v5": {"n": (0.33, 0.25, None), "s": (0.33, 0.50, None), "m": (0.67, 0.75, None), "l": (1.0, 1.0, None),
           "x": (1.33, 1.25, None)},
    "v8": {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768), "l": (1.0, 1.0, 512),
           "x": (1.0, 1.25, 512)},
}
BASE_WIDTHS = (64, 128, 256, 512, 1024)  # stem, stage 1..4
BASE_DEPTHS = {"v5": (3, 6, 9, 3), "v8": (3, 6, 6, 3)}  # CSP blocks in stage 1..4
BASE_NECK_DEPTH = 3  # CSP blocks per neck block in YOLOv5/v8, before deepen_factor
ARCH_BLOCK = {"v5": "c3", "v8": "c2f"}


def scale_width(channels: int, widen_factor: float, max_channels: int | None = None, divisor: int = 8) -> int:
    """`min(channels, max_channels) * widen_factor` rounded up to a multiple of `divisor` (hardware-friendly
    widths, as YOLO does)."""
    capped = channels if max_channels is None else min(channels, max_channels)
    return int(math.ceil(capped * widen_factor / divisor) * divisor)


def scale_depth(num_blocks: int, deepen_factor: float) -> int:
    return max(round(num_blocks * deepen_factor), 1)


def resolve_factors(arch: str, size: str | None, deepen_factor: float | None, widen_factor: float | None,
                    max_channels: int | None = None) -> tuple[float, float, int | None]:
    """(deepen, widen, max_channels): explicit values win over `size`'s; with neither, 1.0, 1.0 and no cap."""
    presets = SIZES[arch]
    if size is not None and size not in presets:
        raise ValueError(f"size must be one of {sorted(presets)} or None, got {size!r}")
    default = presets[size] if size is not None else (1.0, 1.0, None)
    deepen = default[0] if deepen_factor is None else float(deepen_factor)
    widen = default[1] if widen_factor is None else float(widen_factor)
    cap = default[2] if max_channels is None else int(max_channels)
    if deepen <= 0 or widen <= 0 or (cap is not None and cap <= 0):
        raise ValueError(f"deepen_factor, widen_factor and max_channels must be positive, got {deepen}, {widen}, {cap}")
    return deepen, widen, cap


class CSPDarknet(Backbone):
    """YOLOv5/v8 CSPDarknet returning the outputs of the stages in `out_indices`.

    Args:
        arch: "v8" (C2f blocks, 3×3 stem) or "v5" (C3 blocks, 6×6 stem, 9 blocks in stage 3).
        size: "n", "s", "m", "l", "x": the YOLO model size, i.e. preset (deepen, widen, max_channels):
            v8 n 0.33/0.25/1024, s 0.33/0.50/1024, m 0.67/0.75/768, l 1/1/512, x 1/1.25/512 (ultralytics'
            yolov8.yaml); v5 the same factors but x 1.33/1.25, and no cap. None means 1/1, no cap, unless given.
        deepen_factor, widen_factor: multipliers of the block counts and widths; when given they override `size`.
        max_channels: cap on the base widths before widening (YOLOv8 keeps m's last stage at 768 × 0.75 = 576
            channels, l's and x's at 512 × widen); when given it overrides `size`'s.
        out_indices: stages to return (1..4; stage i has stride 2**(i + 1)): (2, 3, 4) gives C3-C5 at 8, 16, 32.
            Stages after the last output are not built (so SPPF only exists when stage 4 is).
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and stages 1..k.
        norm_eval: keep BatchNorm statistics frozen while training (for fine-tuning; off from scratch).

    `neck_depth` is the number of bottlenecks per CSP block that YOLO's neck has at this size (3 × deepen_factor:
    1 for n/s, 2 for m, 3 for l/x); `Detector` passes it to a neck built with `depth=None`, so one
    `model.backbone.size=…` override scales the whole model.
    """

    def __init__(
        self,
        arch: Literal["v5", "v8"] = "v8",
        size: Literal["n", "s", "m", "l", "x"] | None = None,
        deepen_factor: float | None = None,
        widen_factor: float | None = None,
        max_channels: int | None = None,
        out_indices: Sequence[int] = (2, 3, 4),
        frozen_stages: int = -1,
        norm_eval: bool = False,
    ) -> None:
        super().__init__(frozen_stages, norm_eval)
        if arch not in ARCH_BLOCK:
            raise ValueError(f"arch must be one of {sorted(ARCH_BLOCK)}, got {arch!r}")
        self.deepen_factor, self.widen_factor, self.max_channels = resolve_factors(
            arch, size, deepen_factor, widen_factor, max_channels)
        self.out_indices = check_out_indices(out_indices, range(1, 5))
        check_frozen_stages(frozen_stages, 4)
        self.arch = arch
        self.widths = [scale_width(c, self.widen_factor, self.max_channels) for c in BASE_WIDTHS]
        self.depths = [scale_depth(n, self.deepen_factor) for n in BASE_DEPTHS[arch]]
        self.neck_depth = scale_depth(BASE_NECK_DEPTH, self.deepen_factor)
        block = csp_block(ARCH_BLOCK[arch])
        stem_kernel, stem_padding = (6, 2) if arch == "v5" else (3, 1)
        self.stem = ConvNormAct(3, self.widths[0], stem_kernel, 2, stem_padding)
        self.num_stages = max(self.out_indices)
        for i in range(1, self.num_stages + 1):
            layers = [ConvNormAct(self.widths[i - 1], self.widths[i], 3, 2),
                      block(self.widths[i], self.widths[i], self.depths[i - 1], shortcut=True)]
            if i == 4:
                layers.append(SPPF(self.widths[i], self.widths[i], 5))
            setattr(self, f"stage{i}", nn.Sequential(*layers))
        self.out_channels = [self.widths[i] for i in self.out_indices]
        self.strides = [stage_stride(i) for i in self.out_indices]
        self._freeze()

    def stages(self) -> list[nn.Module]:
        return [self.stem] + [getattr(self, f"stage{i}") for i in range(1, self.num_stages + 1)]


__all__ = ["CSPDarknet", "SIZES", "resolve_factors", "scale_depth", "scale_width"]
