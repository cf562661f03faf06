"""Spatial pyramid pooling as YOLO uses it: stride-1 max-pools of several sizes concatenated, which widens the
receptive field of the coarsest map at almost no cost.

`SPP` runs the pools in parallel (5, 9, 13: YOLOv4 and YOLOv5 before 6.0). `SPPF` chains one 5×5 pool three times
(YOLOv5 ≥ 6.0, YOLOv8): max-pooling k×k twice is a (2k−1)×(2k−1) max-pool (padding is −∞, so borders agree too),
so the chain yields exactly the 5/9/13 pools with less work. Both keep the same weights (`cv1`, `cv2`), so their
state dicts are interchangeable. Either can end a backbone (CSPDarknet) or sit in a neck (`FPN(spp=…)`,
`PAN(spp=…)`); torchvision has neither.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from framework.models.blocks import ConvNormAct

SPP_TYPES = ("spp", "sppf")


class SPP(nn.Module):
    """1×1 conv to half width → [x, pool_k1(x), pool_k2(x), …] concatenated → 1×1 conv to `out_channels`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[int] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.cv1 = ConvNormAct(in_channels, hidden, 1)
        self.cv2 = ConvNormAct(hidden * (len(kernel_sizes) + 1), out_channels, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [pool(x) for pool in self.pools], dim=1))


class SPPF(nn.Module):
    """SPP with one `kernel_size` pool applied `num_pools` times in sequence; kernel 5 three times equals SPP's
    5/9/13 pools exactly."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, num_pools: int = 3) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.num_pools = num_pools
        self.cv1 = ConvNormAct(in_channels, hidden, 1)
        self.cv2 = ConvNormAct(hidden * (num_pools + 1), out_channels, 1)
        self.pool = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.cv1(x)]
        for _ in range(self.num_pools):
            outs.append(self.pool(outs[-1]))
        return self.cv2(torch.cat(outs, dim=1))


def build_spp(kind: str | None, channels: int) -> nn.Module | None:
    """The block a neck's `spp` argument names ("spp", "sppf" or None), keeping `channels` unchanged."""
    if kind is None:
        return None
    if kind == "spp":
        return SPP(channels, channels)
    if kind == "sppf":
        return SPPF(channels, channels)
    raise ValueError(f"spp must be one of {SPP_TYPES} or None, got {kind!r}")


__all__ = ["SPP", "SPPF", "SPP_TYPES", "build_spp"]
