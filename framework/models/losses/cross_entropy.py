"""Cross-entropy losses with label smoothing.

Label smoothing (Szegedy et al.) spreads ε of the target mass over the classes so the model is not pushed towards
infinitely confident logits:

- softmax over K classes: target = (1 − ε)·onehot + ε/K, which is exactly `F.cross_entropy(label_smoothing=ε)`;
- sigmoid (one binary problem per class, as the YOLO head and RPN objectness use): each 0/1 target becomes
  y·(1 − ε) + ε/2, i.e. 1 − ε/2 for positives and ε/2 for negatives (two outcomes per problem, so K = 2).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from framework.models.losses.base import Loss, SigmoidLoss, weighted_sum


def check_smoothing(label_smoothing: float) -> float:
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    return float(label_smoothing)


def smooth_binary_targets(targets: Tensor, label_smoothing: float) -> Tensor:
    """The sigmoid form of label smoothing: y·(1 − ε) + ε/2 (soft targets are smoothed the same way)."""
    return targets * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else targets


class BCEWithLogitsLoss(SigmoidLoss):
    """Binary cross-entropy on logits with optional label smoothing; targets may be soft (e.g. IoU scores)."""

    def __init__(self, label_smoothing: float = 0.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.label_smoothing = check_smoothing(label_smoothing)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        targets = smooth_binary_targets(targets, self.label_smoothing)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")

    def negative(self, logits: Tensor) -> Tensor:
        if self.label_smoothing:
            return super().negative(logits)
        return F.softplus(logits)  # −log(1 − σ(x))


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy over the last dimension of `logits` `[N, C]` for integer `labels` `[N]`, with
    label smoothing (C counts every column, background included when the head has one)."""

    use_sigmoid = False

    def __init__(self, label_smoothing: float = 0.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.label_smoothing = check_smoothing(label_smoothing)

    def forward(self, logits: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
        loss = F.cross_entropy(logits.float(), labels, reduction="none", label_smoothing=self.label_smoothing)
        return self.loss_weight * weighted_sum(loss, weight)
