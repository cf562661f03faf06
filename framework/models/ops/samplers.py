"""Random sampling of positives and negatives for the two-stage heads, for the whole batch at once.

torchvision's `BalancedPositiveNegativeSampler` draws a `randperm` per image in a Python loop; here each candidate
gets a random key and the `quota[b]` best keys of image b are kept, with one `topk` over `[B, N]` whose k is the
quota's static bound (so the quota never has to be read on the host: no device synchronization).
"""
from __future__ import annotations

import torch
from torch import Tensor

from framework.models.ops.assigners import NEGATIVE


def random_subset(candidates: Tensor, quota: Tensor, max_quota: int | None = None) -> Tensor:
    """A uniformly random subset of `quota[b]` of the True entries in each row of `candidates` [B, N]; `max_quota`
    is a bound on `quota` known without looking at it (None: N)."""
    keys = torch.rand(candidates.shape, device=candidates.device).masked_fill(~candidates, -1.0)
    k = candidates.shape[1] if max_quota is None else min(max_quota, candidates.shape[1])
    best = keys.topk(k, dim=1).indices  # random order among the candidates, which come first
    chosen = torch.arange(k, device=candidates.device) < quota[:, None]
    return torch.zeros_like(candidates).scatter_(1, best, chosen) & candidates


class RandomSampler:
    """Keep `num` samples per image, at most `pos_fraction` of them positive, the rest negatives (Faster R-CNN:
    256 anchors at 1/2 for the RPN, 512 proposals at 1/4 for the box head)."""

    def __init__(self, num: int = 256, pos_fraction: float = 0.5) -> None:
        if num < 1 or not 0.0 < pos_fraction <= 1.0:
            raise ValueError(f"RandomSampler needs num >= 1 and 0 < pos_fraction <= 1, got {num}, {pos_fraction}")
        self.num, self.pos_fraction = num, pos_fraction

    def sample(self, assigned: Tensor) -> tuple[Tensor, Tensor]:
        """From an assignment `[B, N]` (index ≥ 0, NEGATIVE, or IGNORE) to masks of sampled positives/negatives."""
        pos, neg = assigned >= 0, assigned == NEGATIVE
        max_pos = int(self.num * self.pos_fraction)
        pos_quota = pos.sum(1).clamp(max=max_pos)
        pos = random_subset(pos, pos_quota, max_pos)
        neg_quota = (self.num - pos_quota).clamp(min=0).minimum(neg.sum(1))
        return pos, random_subset(neg, neg_quota, self.num)
