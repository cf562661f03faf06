"""Learning-rate schedules stepped every iteration: a warmup, then a decay policy.

Warmup is counted in iterations and decay in epochs or iterations (as in mmdetection's schedules), so one
scheduler that knows the epoch length does both; torch's `SequentialLR` of `LinearLR` + `MultiStepLR` would need
the milestones in iterations and cannot be written in epochs in a config. One-cycle is torch's own `OneCycleLR`
(configs/scheduler/onecycle.yaml); `build_scheduler` gives every scheduler the epoch length it asks for.
"""
from __future__ import annotations

import inspect
import math
from bisect import bisect_right
from typing import Any, Callable, Sequence

from torch.optim import Optimizer

from framework.config.validation import ConfigError
from torch.optim.lr_scheduler import LRScheduler

POLICIES = ("step", "cosine", "poly", "constant")
WARMUPS = ("linear", "exp", "constant", "none")


class WarmupLR(LRScheduler):
    """lr = base_lr × warmup(iteration) × decay(progress), stepped once per iteration.

    Args:
        policy: `step` (× gamma at each milestone), `cosine` (half a cosine from 1 to `min_ratio`), `poly`
            (`min_ratio + (1 − min_ratio)·(1 − t/T)^power`) or `constant`.
        milestones: for `step`, in epochs (`by_epoch`) or iterations.
        gamma: the `step` factor.
        power: the `poly` exponent.
        min_ratio: the final lr of `cosine` and `poly`, as a fraction of the base lr.
        max_epochs: the length of the run (the `cosine`/`poly` horizon T); the config passes trainer.max_epochs.
        by_epoch: decay by whole epochs (the lr changes at epoch boundaries) or by iteration (smoothly).
        warmup: `linear` (from `warmup_ratio` to 1), `exp` (`warmup_ratio^(1 − it/warmup_iters)`), `constant`
            (`warmup_ratio` throughout) or `none`.
        warmup_iters: warmup length in iterations.
        warmup_ratio: the lr factor at iteration 0.
        iters_per_epoch: filled in by the runner from the data loader.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        policy: str = "step",
        milestones: Sequence[int] = (8, 11),
        gamma: float = 0.1,
        power: float = 1.0,
        min_ratio: float = 0.0,
        max_epochs: int = 12,
        by_epoch: bool = True,
        warmup: str = "linear",
        warmup_iters: int = 500,
        warmup_ratio: float = 0.001,
        iters_per_epoch: int = 1,
        last_epoch: int = -1,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"scheduler policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if warmup not in WARMUPS:
            raise ValueError(f"scheduler warmup must be one of {', '.join(WARMUPS)}, got {warmup!r}")
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {list(milestones)}")
        if not 0.0 <= min_ratio <= 1.0 or not 0.0 <= warmup_ratio <= 1.0:
            raise ValueError(f"min_ratio and warmup_ratio must be in [0, 1], got {min_ratio}, {warmup_ratio}")
        if warmup == "exp" and warmup_ratio == 0.0 and warmup_iters > 0:
            raise ValueError("exp warmup needs warmup_ratio > 0 (it starts at warmup_ratio)")
        self.policy, self.milestones, self.gamma, self.power = policy, [int(m) for m in milestones], gamma, power
        self.min_ratio, self.max_epochs, self.by_epoch = min_ratio, max(1, int(max_epochs)), by_epoch
        self.warmup = warmup if warmup_iters > 0 else "none"
        self.warmup_iters, self.warmup_ratio = int(warmup_iters), warmup_ratio
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        super().__init__(optimizer, last_epoch)

    def decay(self, iteration: int) -> float:
        t = iteration // self.iters_per_epoch if self.by_epoch else iteration
        horizon = self.max_epochs if self.by_epoch else self.max_epochs * self.iters_per_epoch
        if self.policy == "step":
            return self.gamma ** bisect_right(self.milestones, t)
        progress = min(t / horizon, 1.0)
        if self.policy == "cosine":
            return self.min_ratio + (1 - self.min_ratio) * (1 + math.cos(math.pi * progress)) / 2
        if self.policy == "poly":
            return self.min_ratio + (1 - self.min_ratio) * (1 - progress) ** self.power
        return 1.0

    def warmup_factor(self, iteration: int) -> float:
        if self.warmup == "none" or iteration >= self.warmup_iters:
            return 1.0
        if self.warmup == "linear":
            return self.warmup_ratio + (1 - self.warmup_ratio) * iteration / self.warmup_iters
        if self.warmup == "exp":
            return self.warmup_ratio ** (1 - iteration / self.warmup_iters)
        return self.warmup_ratio

    def factor(self, iteration: int) -> float:
        return self.warmup_factor(iteration) * self.decay(iteration)

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)  # LRScheduler's counter: here, iterations done
        return [base * f for base in self.base_lrs]


class WarmupMultiStepLR(WarmupLR):
    """The "1x" schedule: linear warmup, then × gamma at each milestone epoch (checkpoints name this class)."""

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int] = (8, 11), gamma: float = 0.1,
                 warmup_iters: int = 500, warmup_ratio: float = 0.001, iters_per_epoch: int = 1,
                 last_epoch: int = -1) -> None:
        super().__init__(optimizer, "step", milestones, gamma, warmup_iters=warmup_iters, warmup_ratio=warmup_ratio,
                         iters_per_epoch=iters_per_epoch, last_epoch=last_epoch)


def build_scheduler(make: Callable[..., Any], optimizer: Optimizer, iters_per_epoch: int, lr_scale: float = 1.0) -> Any:
    """Call a scheduler partial with the optimizer and the epoch length under the name it takes
    (`iters_per_epoch` for ours, `steps_per_epoch` for torch's `OneCycleLR`).

    A scheduler that sets the lr itself from `max_lr` (one-cycle) gets it per param group, times the linear scaling
    factor and each group's `lr_mult`, so the optimizer's scaling and multipliers hold for it too."""
    params = inspect.signature(make).parameters
    extra: dict[str, Any] = {name: iters_per_epoch for name in ("iters_per_epoch", "steps_per_epoch") if name in params}
    max_lr = getattr(make, "keywords", {}).get("max_lr")
    if max_lr is not None and isinstance(max_lr, (int, float)):
        extra["max_lr"] = [max_lr * lr_scale * g.get("lr_mult", 1.0) for g in optimizer.param_groups]
    return make(optimizer, **extra)


# What a scheduler's state_dict holds about *where* the run is, as opposed to settings that come from the config.
_POSITION_KEYS = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial")


def load_scheduler_position(scheduler: Any, state: dict[str, Any]) -> None:
    """Restore only the position of a schedule: its shape (milestones, max_epochs, total steps) stays the one the
    current config built, so `trainer.max_epochs=24 resume=true` extends a 12-epoch run's schedule rather than
    replaying the old one. With an unchanged config this equals `load_state_dict`."""
    position = {k: v for k, v in state.items() if k in _POSITION_KEYS}
    total = getattr(scheduler, "total_steps", None)  # OneCycleLR refuses to step past its end
    if total is not None and position.get("last_epoch", 0) >= total:
        raise ConfigError(f"The checkpoint's schedule is at step {position['last_epoch']}, past the {total} steps of "
                         "the one-cycle schedule this config builds; one-cycle cannot be extended, use another "
                         "scheduler (e.g. scheduler=cosine) to train longer.")
    scheduler.__dict__.update(position)
