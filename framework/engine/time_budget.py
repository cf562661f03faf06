"""Turn a wall-clock budget (`trainer.max_time`) into a number of epochs, so the schedule can end with the budget.

A budget that only stops the run cuts the schedule wherever the clock runs out: a step or cosine schedule written
for 300 epochs is still at its peak learning rate when a 10-minute run ends, and the last epochs of close-mosaic
never come. Ultralytics' `time=` instead re-estimates its epoch count from the measured epoch time and refits its
schedule after every epoch; this does the same. Unlike ultralytics, the estimate counts only epochs that fit whole,
so the run ends with its final evaluation inside the budget instead of being cut in its last epoch.
"""
from __future__ import annotations

import math

__all__ = ["epochs_within_budget"]


def epochs_within_budget(budget_s: float, elapsed_s: float, epochs_done: int) -> int:
    """The total number of epochs that fit in `budget_s` seconds, at the mean epoch time so far (evaluations
    included), counting the `epochs_done` already trained; at least `epochs_done` (and at least 1)."""
    if epochs_done < 1 or elapsed_s <= 0:
        raise ValueError("the estimate needs at least one finished epoch")
    per_epoch = elapsed_s / epochs_done
    left = max(0.0, budget_s - elapsed_s)
    return max(1, epochs_done + math.floor(left / per_epoch))
