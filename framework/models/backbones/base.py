"""What every backbone shares: stage numbering, frozen stages, frozen batch-norm statistics, torchvision weights.

Stage numbering (all torchvision-based backbones here): stage 0 is the stem and stage i >= 1 ends at stride
2**(i + 1), so its output is the usual C(i+1) map. `out_indices=(2, 3, 4)` therefore means C3-C5 at strides
8, 16, 32 whichever backbone is chosen, and a config can swap backbones without touching the neck.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from torchvision import models


class PretrainedWeightsError(RuntimeError):
    """Raised when pretrained weights were asked for but cannot be fetched (e.g. no internet) or do not exist."""


def stage_stride(index: int) -> int:
    """Stride of the output of stage `index` (see the module docstring)."""
    return 2 ** (index + 1)


def check_out_indices(out_indices: Sequence[int], valid: Sequence[int]) -> tuple[int, ...]:
    """`out_indices` as a tuple, or a ValueError saying what is allowed."""
    out = tuple(int(i) for i in out_indices)
    if not out or any(i not in valid for i in out) or any(a >= b for a, b in zip(out, out[1:])):
        raise ValueError(f"out_indices must be increasing stage numbers in {min(valid)}..{max(valid)}, got {out}")
    return out


def check_frozen_stages(frozen_stages: int, num_stages: int) -> None:
    if not -1 <= frozen_stages <= num_stages:
        raise ValueError(f"frozen_stages must be in -1..{num_stages}, got {frozen_stages}")


def load_torchvision_weights(arch: str, weights_enum: str, pretrained: bool | str) -> models.WeightsEnum | None:
    """Resolve `pretrained` (False, True for the default weights, or a weights name) to a torchvision weights entry."""
    if not pretrained:
        return None
    enum = getattr(models, weights_enum)
    if pretrained is True:
        return enum.DEFAULT
    try:
        return enum[str(pretrained)]
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise ValueError(f"pretrained={pretrained!r} is not a weights name of {arch} ({weights_enum}); use true, "
                         f"false or one of: {names}") from None


@contextmanager
def explain_download_errors(arch: str, weights: models.WeightsEnum | None) -> Iterator[None]:
    """Turn a failed weights download (urllib errors, hash mismatches, ...) into a PretrainedWeightsError that says
    how to place the file by hand."""
    try:
        yield
    except Exception as exc:
        if weights is None:
            raise
        raise PretrainedWeightsError(
            f"Could not load the pretrained weights {weights} for {arch}: {str(exc).rstrip('.')}. Without internet, download "
            f"{getattr(weights, 'url', '?')} elsewhere and put it in {torch.hub.get_dir()}/checkpoints/, "
            "or train from scratch with model.backbone.pretrained=false."
        ) from exc


def build_torchvision_model(arch: str, weights_enum: str, pretrained: bool | str, **kwargs: object) -> nn.Module:
    """`torchvision.models.<arch>(weights=...)`, with `pretrained` resolved and download failures explained."""
    weights = load_torchvision_weights(arch, weights_enum, pretrained)
    with explain_download_errors(arch, weights):
        return getattr(models, arch)(weights=weights, **kwargs)


class Backbone(nn.Module):
    """Base class: runs `stages()` in order and returns the outputs of the stages in `out_indices`.

    Subclasses build their modules, set `out_indices`, `out_channels` and `strides`, implement `stages()` (stem
    first, only the stages that were built) and call `self._freeze()` at the end of `__init__`.

    `frozen_stages`: -1 trains everything; 0 freezes the stem; k freezes the stem and stages 1..k. Frozen parts
    have requires_grad False and stay in eval mode through `.train()`, so their BatchNorm statistics and dropout
    are fixed as well. `norm_eval`: keep every BatchNorm layer in eval mode while training, the usual choice with
    pretrained weights and small per-GPU batches; leave it off when training from scratch. `norm_frozen`: every
    BatchNorm layer becomes a fixed affine map, statistics and weight/bias alike (torchvision's FrozenBatchNorm2d,
    mmdetection's `requires_grad=False`), as torchvision's detectors fine-tune ImageNet weights. The layers stay
    BatchNorm modules in eval mode rather than FrozenBatchNorm2d: same numbers, one fused kernel instead of four
    elementwise ops, and checkpoints keep their keys.
    """

    out_indices: tuple[int, ...]
    out_channels: list[int]
    strides: list[int]

    def __init__(self, frozen_stages: int = -1, norm_eval: bool = False, norm_frozen: bool = False) -> None:
        super().__init__()
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval or norm_frozen
        self.norm_frozen = norm_frozen

    def stages(self) -> list[nn.Module]:
        raise NotImplementedError

    def frozen_modules(self) -> list[nn.Module]:
        return self.stages()[: self.frozen_stages + 1]

    def _freeze(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)
        if self.norm_frozen:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
                    for p in m.parameters():
                        p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Backbone":
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
