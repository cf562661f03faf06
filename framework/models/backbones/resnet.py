"""ResNet backbones from torchvision, returning multi-scale feature maps.

We wrap torchvision's ResNet rather than writing our own so that its pretrained weights load as they are; what
torchvision lacks for detection is the choice of outputs, frozen stages and frozen batch-norm statistics.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torchvision import models

_ARCHS = {
    18: ("resnet18", "ResNet18_Weights", 64),
    34: ("resnet34", "ResNet34_Weights", 64),
    50: ("resnet50", "ResNet50_Weights", 256),
    101: ("resnet101", "ResNet101_Weights", 256),
    152: ("resnet152", "ResNet152_Weights", 256),
}


class PretrainedWeightsError(RuntimeError):
    """Raised when pretrained weights were asked for but cannot be fetched (e.g. no internet)."""


def load_torchvision_weights(arch: str, weights_enum: str, pretrained: bool | str) -> object | None:
    """Resolve `pretrained` (False, True for the default weights, or a weights name) to a torchvision weights entry."""
    if not pretrained:
        return None
    enum = getattr(models, weights_enum)
    return enum.DEFAULT if pretrained is True else enum[str(pretrained)]


class ResNet(nn.Module):
    """A torchvision ResNet trunk that returns the outputs of the stages listed in `out_indices`.

    Args:
        depth: 18, 34, 50, 101 or 152.
        out_indices: which of `layer1..layer4` to return (1-based, as in torchvision's names): (2, 3, 4) gives
            C3-C5 with strides 8, 16, 32.
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and layer1..layerk.
        norm_eval: keep BatchNorm layers in eval mode (running statistics frozen) while training, the usual choice
            with pretrained weights and small per-GPU batches. Leave it off when training from scratch.
        pretrained: False, True (torchvision's default ImageNet weights) or a weights name such as
            "IMAGENET1K_V2". Downloading needs internet; the error says how to place the file by hand.
    """

    def __init__(
        self,
        depth: int = 50,
        out_indices: Sequence[int] = (2, 3, 4),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pretrained: bool | str = False,
    ) -> None:
        super().__init__()
        if depth not in _ARCHS:
            raise ValueError(f"ResNet depth must be one of {sorted(_ARCHS)}, got {depth}")
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(i not in (1, 2, 3, 4) for i in out_indices) or list(out_indices) != sorted(out_indices):
            raise ValueError(f"out_indices must be increasing stage numbers in 1..4, got {out_indices}")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in -1..4, got {frozen_stages}")
        arch, weights_enum, base = _ARCHS[depth]
        weights = load_torchvision_weights(arch, weights_enum, pretrained)
        try:
            net = getattr(models, arch)(weights=weights)
        except Exception as exc:  # urllib errors, hash mismatches, …
            raise PretrainedWeightsError(
                f"Could not load the pretrained weights {weights} for {arch}: {exc}. Without internet, download "
                f"{getattr(weights, 'url', '?')} elsewhere and put it in {torch.hub.get_dir()}/checkpoints/, "
                "or train from scratch with model.backbone.pretrained=false."
            ) from exc
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        # stages after the last output are never run: don't keep them (no dead parameters, honest counts)
        self.num_stages = max(out_indices)
        for i in range(1, self.num_stages + 1):
            setattr(self, f"layer{i}", getattr(net, f"layer{i}"))
        self.depth = depth
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.out_channels = [base * 2 ** (i - 1) for i in out_indices]
        self.strides = [2 ** (i + 1) for i in out_indices]
        self._freeze()

    def stages(self) -> list[nn.Module]:
        return [self.stem] + [getattr(self, f"layer{i}") for i in range(1, self.num_stages + 1)]

    def _frozen_modules(self) -> list[nn.Module]:
        return self.stages()[: self.frozen_stages + 1]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, stage in enumerate(self.stages()):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs
