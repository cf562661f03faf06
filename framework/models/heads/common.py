"""Building blocks several heads share: the conv tower of dense heads and the check of the neck's channels."""
from __future__ import annotations

from typing import Sequence

from torch import nn


def uniform_channels(in_channels: int | Sequence[int], owner: str) -> int:
    """Heads with weights shared across levels need one channel count; necks report an int or a list."""
    if isinstance(in_channels, int):
        return in_channels
    channels = {int(c) for c in in_channels}
    if len(channels) != 1:
        raise ValueError(f"{owner} shares its convolutions across pyramid levels, so every level needs the same "
                         f"channels; the neck gives {list(in_channels)}. Use a neck with one out_channels value.")
    return channels.pop()


def conv_tower(in_channels: int, feat_channels: int, num_convs: int, norm: str | None) -> nn.Sequential:
    """`num_convs` × (3×3 conv → norm → ReLU); norm is None (RetinaNet paper), "gn" (FCOS) or "bn"."""
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers.append(nn.Conv2d(in_channels if i == 0 else feat_channels, feat_channels, 3, padding=1))
        if norm == "gn":
            layers.append(nn.GroupNorm(32 if feat_channels % 32 == 0 else 8, feat_channels))
        elif norm == "bn":
            layers.append(nn.BatchNorm2d(feat_channels))
        elif norm is not None:
            raise ValueError(f"norm must be null, 'gn' or 'bn', got {norm!r}")
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
