"""CSPDarknet, the backbone of YOLOv5 (≥ 6.0) and YOLOv8, written from the blocks in `framework.models.blocks`.

torchvision has no CSPDarknet and there are no torchvision-format pretrained weights for it, so it is hand-written
and always trained from scratch here (hence no `pretrained` argument). Layout, for widths × `widen_factor` and
block counts × `deepen_factor`:

    stage 0  stem     ConvNormAct 3→64, stride 2 (kernel 6 for v5, 3 for v8)            stride 2
    stage 1  ConvNormAct 64→128 stride 2 + CSP ×3                                        stride 4   (C2)
    stage 2  ConvNormAct 128→256 stride 2 + CSP ×6                                       stride 8   (C3)
    stage 3  ConvNormAct 256→512 stride 2 + CSP ×9 (v5) / ×6 (v8)                        stride 16  (C4)
    stage 4  ConvNormAct 512→1024 stride 2 + CSP ×3 + SPPF                               stride 32  (C5)

CSP is `C3` for `arch="v5"` and `C2f` for `arch="v8"`, both with residual bottlenecks in the backbone. Stage
numbering and freezing follow `framework.models.backbones.base`, so `out_indices=(2, 3, 4)` is C3-C5 as for ResNet.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

from torch import nn

from framework.models.backbones.base import Backbone, check_frozen_stages, check_out_indices, stage_stride
from framework.models.blocks import ConvNormAct, csp_block
from framework.models.necks.spp import SPPF

# (deepen_factor, widen_factor) of the YOLOv5/v8 model sizes
SIZES: dict[str, tuple[float, float]] = {
    "n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25),
}
BASE_WIDTHS = (64, 128, 256, 512, 1024)  # stem, stage 1..4
BASE_DEPTHS = {"v5": (3, 6, 9, 3), "v8": (3, 6, 6, 3)}  # CSP blocks in stage 1..4
ARCH_BLOCK = {"v5": "c3", "v8": "c2f"}


def scale_width(channels: int, widen_factor: float, divisor: int = 8) -> int:
    """`channels * widen_factor` rounded up to a multiple of `divisor` (hardware-friendly widths, as YOLO does)."""
    return int(math.ceil(channels * widen_factor / divisor) * divisor)


def scale_depth(num_blocks: int, deepen_factor: float) -> int:
    return max(round(num_blocks * deepen_factor), 1)


def resolve_factors(size: str | None, deepen_factor: float | None, widen_factor: float | None) -> tuple[float, float]:
    """Explicit factors win over `size`; with neither, 1.0 (the "l" model)."""
    if size is not None and size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)} or None, got {size!r}")
    default = SIZES[size] if size is not None else (1.0, 1.0)
    deepen = default[0] if deepen_factor is None else float(deepen_factor)
    widen = default[1] if widen_factor is None else float(widen_factor)
    if deepen <= 0 or widen <= 0:
        raise ValueError(f"deepen_factor and widen_factor must be positive, got {deepen}, {widen}")
    return deepen, widen


class CSPDarknet(Backbone):
    """YOLOv5/v8 CSPDarknet returning the outputs of the stages in `out_indices`.

    Args:
        arch: "v8" (C2f blocks, 3×3 stem) or "v5" (C3 blocks, 6×6 stem, 9 blocks in stage 3).
        size: "n", "s", "m" (also "l", "x"): the YOLO model size, i.e. preset (deepen, widen) factors
            n 0.33/0.25, s 0.33/0.50, m 0.67/0.75, l 1/1, x 1.33/1.25. None means 1/1 unless factors are given.
        deepen_factor, widen_factor: multipliers of the block counts and widths; when given they override `size`.
        out_indices: stages to return (1..4; stage i has stride 2**(i + 1)): (2, 3, 4) gives C3-C5 at 8, 16, 32.
            Stages after the last output are not built (so SPPF only exists when stage 4 is).
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and stages 1..k.
        norm_eval: keep BatchNorm statistics frozen while training (for fine-tuning; off from scratch).

    YOLOv8 also caps the widest stage (768 channels before widening for m, 512 for l/x); this class does not, so
    its m has 768 channels at C5 where ultralytics' has 576.
    """

    def __init__(
        self,
        arch: Literal["v5", "v8"] = "v8",
        size: Literal["n", "s", "m", "l", "x"] | None = None,
        deepen_factor: float | None = None,
        widen_factor: float | None = None,
        out_indices: Sequence[int] = (2, 3, 4),
        frozen_stages: int = -1,
        norm_eval: bool = False,
    ) -> None:
        super().__init__(frozen_stages, norm_eval)
        if arch not in ARCH_BLOCK:
            raise ValueError(f"arch must be one of {sorted(ARCH_BLOCK)}, got {arch!r}")
        self.deepen_factor, self.widen_factor = resolve_factors(size, deepen_factor, widen_factor)
        self.out_indices = check_out_indices(out_indices, range(1, 5))
        check_frozen_stages(frozen_stages, 4)
        self.arch = arch
        self.widths = [scale_width(c, self.widen_factor) for c in BASE_WIDTHS]
        self.depths = [scale_depth(n, self.deepen_factor) for n in BASE_DEPTHS[arch]]
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
