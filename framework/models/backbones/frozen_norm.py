"""Frozen BatchNorm folded into the convolution before it.

With `norm_frozen`, a BatchNorm layer is a fixed per-channel affine map y = s·x + t. A convolution followed by it
equals one convolution with weights W·s and bias t, so the backward pass and the forward pass skip a full read
and write of every activation the BatchNorm layer would have touched; the price is scaling the weights each step
(and their gradient), which is far smaller than the activations at detection input sizes. torchvision has no such
module for training (its `FrozenBatchNorm2d` runs as four elementwise ops after the convolution), and
`torch.fx`-based fusion is for inference only, so it is hand-written here.

The modules keep their classes' parameters, buffers and state-dict keys: the convolution turns into a
`FrozenNormConv2d` that reads the BatchNorm layer's current buffers at each call, and the BatchNorm layer into a
`FoldedBatchNorm2d` that passes its input through. Loading a checkpoint or torchvision weights afterwards therefore
works as before, and the folded numbers follow whatever the BatchNorm layer holds.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn


class FoldedBatchNorm2d(nn.BatchNorm2d):
    """A frozen BatchNorm layer whose affine map is applied by the convolution before it; passes input through."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class FrozenNormConv2d(nn.Conv2d):
    """`nn.Conv2d` followed by a frozen `BatchNorm2d`, computed as one convolution with folded weights and bias."""

    _norm: FoldedBatchNorm2d
    _cache: tuple[tuple, Tensor, Tensor] | None

    def folded(self) -> tuple[Tensor, Tensor]:
        norm = self._norm
        # when the folded weight needs no gradient (a frozen stage, or inference), reuse it until a tensor changes
        own = [p for p in (self.weight, self.bias) if p is not None]
        reusable = not (torch.is_grad_enabled() and any(p.requires_grad for p in own))
        key = None
        if reusable:
            key = tuple((t.data_ptr(), t._version) for t in (*own, norm.weight, norm.bias, norm.running_mean,
                                                              norm.running_var))
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1], self._cache[2]
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        bias = norm.bias - norm.running_mean * scale
        if self.bias is not None:
            bias = bias + self.bias * scale
        weight = self.weight * scale.reshape(-1, 1, 1, 1)
        self._cache = (key, weight.detach(), bias.detach()) if reusable else None
        return weight, bias

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, *self.folded())


def fold_frozen_norms(pairs: Iterable[tuple[nn.Conv2d, nn.BatchNorm2d]]) -> None:
    """Fold each frozen BatchNorm layer into the convolution whose output it alone reads; idempotent.

    The caller names the pairs because only it knows the wiring (a BatchNorm layer after a convolution in a
    module's attribute list is not proof that it reads that convolution's output)."""
    for conv, norm in pairs:
        if isinstance(conv, FrozenNormConv2d):
            continue
        if type(conv) is not nn.Conv2d or type(norm) is not nn.BatchNorm2d or norm.num_features != conv.out_channels:
            raise TypeError(f"cannot fold {type(norm).__name__} into {type(conv).__name__}")
        if norm.training or any(p.requires_grad for p in norm.parameters()) or not norm.track_running_stats:
            raise ValueError("only a frozen BatchNorm layer (eval mode, no trainable parameters) can be folded")
        # same instances, so parameters, buffers, hooks and the optimizer's references are untouched
        conv.__class__ = FrozenNormConv2d
        norm.__class__ = FoldedBatchNorm2d
        object.__setattr__(conv, "_norm", norm)  # not a submodule: its keys stay where they are in the state dict
        object.__setattr__(conv, "_cache", None)
