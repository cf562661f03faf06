"""Learning-rate schedules stepped every iteration.

Warmup is counted in iterations and decay in epochs (as in mmdetection's "1x" schedule), so one scheduler that
knows the epoch length does both; torch's `SequentialLR` of `LinearLR` + `MultiStepLR` would need the milestones
in iterations and cannot be written in epochs in a config.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class WarmupMultiStepLR(LRScheduler):
    """lr = base_lr * warmup_factor(it) * gamma ** (number of milestones passed), stepped once per iteration.

    Args:
        milestones: epochs at which the lr is multiplied by `gamma`.
        warmup_iters: length of the linear warmup, in iterations (0 disables it).
        warmup_ratio: the lr factor at iteration 0, rising linearly to 1 at `warmup_iters`.
        iters_per_epoch: filled in by the runner from the data loader.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Sequence[int] = (8, 11),
        gamma: float = 0.1,
        warmup_iters: int = 500,
        warmup_ratio: float = 0.001,
        iters_per_epoch: int = 1,
        last_epoch: int = -1,
    ) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {list(milestones)}")
        self.milestones = [int(m) for m in milestones]
        self.gamma, self.warmup_iters, self.warmup_ratio = gamma, int(warmup_iters), warmup_ratio
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        super().__init__(optimizer, last_epoch)

    def factor(self, iteration: int) -> float:
        f = self.gamma ** bisect_right(self.milestones, iteration // self.iters_per_epoch)
        if iteration < self.warmup_iters:
            f *= self.warmup_ratio + (1 - self.warmup_ratio) * iteration / self.warmup_iters
        return f

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)  # LRScheduler's counter: here, iterations done
        return [base * f for base in self.base_lrs]
