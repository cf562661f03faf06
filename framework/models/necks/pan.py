"""Path Aggregation Network (PANet's bottom-up augmentation of FPN), in the YOLOv5/v8 form with CSP blocks.

FPN only carries coarse semantics down to fine levels; PAN adds a second, bottom-up path so that fine localization
reaches the coarse levels too. YOLO merges by concatenation followed by a CSP block instead of FPN's sums, and keeps
each level's backbone width. torchvision has no PAN, so it is written here from the shared blocks.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from framework.models.blocks import ConvNormAct, csp_block
from framework.models.necks.spp import build_spp


class PAN(nn.Module):
    """Top-down path (upsample + concat + CSP block), then bottom-up path (stride-2 conv + concat + CSP block).

    With inputs C3..C5 of widths c3..c5 the outputs keep those widths (YOLO style), unless `out_channels` asks
    otherwise:

    - `block="c2f"` (YOLOv8): top-down `T4 = C2f(cat(up(C5), C4))`, `P3 = C2f(cat(up(T4), C3))`; bottom-up
      `P4 = C2f(cat(conv_s2(P3), T4))`, `P5 = C2f(cat(conv_s2(P4), C5))`.
    - `block="c3"` (YOLOv5): the same with a 1×1 conv reducing each top-down map to the next finer width before it
      is upsampled; the bottom-up path concatenates those reduced maps (YOLOv5's layers 10 and 14).

    Args:
        in_channels: widths of the backbone outputs, fine to coarse (Detector fills this in).
        in_strides: their strides (default 8, 16, 32, …); used to report `strides`.
        out_channels: None keeps each level's width (YOLO); an int first reduces every input to that width with a
            1×1 ConvNormAct and runs the whole PAN at it (as mmdetection's PAFPN does after its laterals), so heads
            sharing convs across levels (RetinaNet/FCOS) can sit on it without CSP blocks at ResNet's 2048 channels;
            a list sets each output's width with 1×1 projections (extra levels take the last one).
        num_outs: number of outputs; more than the inputs adds coarser levels, each a stride-2 3×3 conv + SiLU of
            the previous one (P6, P7 for RetinaNet/FCOS). None: as many as the inputs.
        extra_from: where the first extra level comes from: "p5" the last PAN output (FCOS), "c5" the last input
            (RetinaNet), as `FPN`'s argument of that name.
        block: "c2f" (YOLOv8) or "c3" (YOLOv5) — also selects the lateral reduction described above.
        depth: bottlenecks per CSP block (YOLO's 3 × deepen_factor: 1 for n/s, 2 for m, 3 for l/x). None: 1, or,
            when the `Detector` builds this neck, the backbone's `neck_depth` (CSPDarknet's size decides).
        spp: "spp" or "sppf" applies that block to the coarsest input first (for backbones that do not end with one).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int] | None = None,
        out_channels: int | Sequence[int] | None = None,
        num_outs: int | None = None,
        extra_from: Literal["c5", "p5"] = "p5",
        block: Literal["c2f", "c3"] = "c2f",
        depth: int | None = None,
        spp: Literal["spp", "sppf"] | None = None,
    ) -> None:
        super().__init__()
        chans = [int(c) for c in in_channels]
        levels = len(chans)
        if levels < 2:
            raise ValueError(f"PAN needs at least two input levels, got in_channels={chans}")
        num_outs = levels if num_outs is None else int(num_outs)
        if num_outs < levels:
            raise ValueError(f"num_outs ({num_outs}) must be at least the number of inputs ({levels})")
        if extra_from not in ("c5", "p5"):
            raise ValueError(f"extra_from must be 'c5' or 'p5', got {extra_from!r}")
        depth = 1 if depth is None else int(depth)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        csp = csp_block(block)
        reduce = block == "c3"
        self.block, self.depth = block, depth
        self.spp = build_spp(spp, chans[-1])  # None adds no state-dict keys
        raw_last = chans[-1]
        uniform = isinstance(out_channels, int)
        self.inputs = nn.ModuleList(
            ConvNormAct(c, int(out_channels), 1) if uniform and c != out_channels else nn.Identity() for c in chans)
        if uniform:
            chans = [int(out_channels)] * levels
        # width of the top-down map of level i once it leaves for the finer level (and feeds the bottom-up path)
        lateral = [chans[i - 1] if reduce else chans[i] for i in range(levels)]
        self.laterals = nn.ModuleList(
            ConvNormAct(chans[i], chans[i - 1], 1) if reduce else nn.Identity() for i in range(1, levels))
        self.top_down = nn.ModuleList(
            csp(lateral[i + 1] + chans[i], chans[i], depth, shortcut=False) for i in range(levels - 1))
        self.downsamples = nn.ModuleList(ConvNormAct(chans[i], chans[i], 3, 2) for i in range(levels - 1))
        self.bottom_up = nn.ModuleList(
            csp(chans[i - 1] + lateral[i], chans[i], depth, shortcut=False) for i in range(1, levels))

        widths = chans + [chans[-1]] * (num_outs - levels)
        if out_channels is None:
            targets = list(widths)
        elif isinstance(out_channels, int):
            targets = [int(out_channels)] * num_outs
        else:
            given = [int(c) for c in out_channels]
            if not given or len(given) > num_outs:
                raise ValueError(f"out_channels lists {len(given)} widths for {num_outs} outputs")
            targets = given + [given[-1]] * (num_outs - len(given))
        self.projections = nn.ModuleList(
            nn.Identity() if targets[i] == chans[i] else ConvNormAct(chans[i], targets[i], 1) for i in range(levels))
        # no BatchNorm here: P6/P7 can be 1×1 and BN cannot train on one value per channel (batch 1)
        self.extra_from = extra_from
        extra = range(levels, num_outs)
        extra_in = [raw_last if i == levels and extra_from == "c5" else targets[i - 1] for i in extra]
        self.extra_levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, targets[i], 3, 2, 1), nn.SiLU()) for c, i in zip(extra_in, extra))
        self.out_channels: int | list[int] = targets[0] if len(set(targets)) == 1 else targets
        in_strides = [int(s) for s in in_strides] if in_strides is not None else [2 ** (i + 3) for i in range(levels)]
        if len(in_strides) != levels:
            raise ValueError(f"in_strides has {len(in_strides)} entries for {levels} inputs")
        self.strides = in_strides + [in_strides[-1] * 2 ** (i + 1) for i in range(num_outs - levels)]

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        x = list(feats)
        if self.spp is not None:
            x[-1] = self.spp(x[-1])
        raw_last = x[-1]
        x = [reduce(f) for reduce, f in zip(self.inputs, x)]
        levels = len(x)
        lateral: list[Tensor | None] = [None] * levels
        inner = x[-1]
        for i in range(levels - 1, 0, -1):
            lateral[i] = self.laterals[i - 1](inner)
            up = F.interpolate(lateral[i], size=x[i - 1].shape[-2:], mode="nearest")
            inner = self.top_down[i - 1](torch.cat([up, x[i - 1]], dim=1))
        outs = [inner]
        for i in range(1, levels):
            down = self.downsamples[i - 1](outs[-1])
            outs.append(self.bottom_up[i - 1](torch.cat([down, lateral[i]], dim=1)))
        outs = [proj(o) for proj, o in zip(self.projections, outs)]
        source = raw_last if self.extra_from == "c5" else outs[-1]
        for extra in self.extra_levels:
            outs.append(extra(source))
            source = outs[-1]
        return outs


__all__ = ["PAN"]
