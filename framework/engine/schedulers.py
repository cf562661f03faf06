"""Learning-rate schedules stepped every iteration: a warmup, then a decay policy.

Warmup is counted in iterations and decay in epochs or iterations (as in mmdetection's schedules), so one
scheduler that knows the epoch length does both; torch's `SequentialLR` of `LinearLR` + `MultiStepLR` would need
the milestones in iterations and cannot be written in epochs in a config. One-cycle is torch's own `OneCycleLR`
(configs/scheduler/onecycle.yaml); `build_scheduler` gives every scheduler the epoch length it asks for.
"""
from __future__ import annotations

import functools
import inspect
import math
from bisect import bisect_right
from typing import Any, Callable, Sequence

from torch.optim import Optimizer

from framework.config.validation import ConfigError
from torch.optim.lr_scheduler import LRScheduler

POLICIES = ("step", "cosine", "poly", "linear", "constant")
WARMUPS = ("linear", "exp", "constant", "none")


def _milestone_kind(milestones: Sequence[float]) -> str:
    """`fraction` when every milestone lies in (0, 1), `epoch` when every one is a whole number >= 1."""
    values = [float(m) for m in milestones]
    if all(0.0 < v < 1.0 for v in values):
        return "fraction"
    if all(v >= 1.0 and v == int(v) for v in values):
        return "epoch"
    raise ValueError(f"milestones must be fractions of the run in (0, 1) (e.g. [0.667, 0.917], the 1x schedule's "
                     f"epochs 8 and 11 of 12) or whole epochs >= 1, not a mix; got {list(milestones)}")


class WarmupLR(LRScheduler):
    """lr = base_lr × warmup(iteration) × decay(progress), stepped once per iteration.

    Every length is relative to the run, so one config fits a 12-epoch COCO run and a 300-epoch run on 300 photos:
    milestones are fractions of `max_epochs`, warmup is capped to `warmup_max_share` of the run, and `fit()` moves
    the whole schedule when the run's length changes (a `trainer.max_time` budget is turned into epochs after the
    first one, as ultralytics' `time=` does). A schedule that cannot fit its run is an error before training.

    Args:
        policy: `step` (× gamma at each milestone), `cosine` (half a cosine from 1 to `min_ratio`), `poly`
            (`min_ratio + (1 − min_ratio)·(1 − t/T)^power`), `linear` (poly with power 1: ultralytics' default) or
            `constant`.
        milestones: for `step`, fractions of the run in (0, 1) (`[0.667, 0.917]` is the 1x schedule's epochs 8 and
            11 of 12), or whole epochs (each must come before `max_epochs`).
        gamma: the `step` factor.
        power: the `poly` exponent.
        min_ratio: the final lr of `cosine`, `poly` and `linear`, as a fraction of the base lr.
        max_epochs: the length of the run (the config passes trainer.max_epochs). None (direct use only): epoch
            milestones are not checked and fractions are refused.
        by_epoch: decay by whole epochs (the lr changes at epoch boundaries) or by iteration (smoothly).
        warmup: `linear` (from `warmup_ratio` to 1), `exp` (`warmup_ratio^(1 − it/warmup_iters)`), `constant`
            (`warmup_ratio` throughout) or `none`.
        warmup_iters: warmup length in iterations (mmdetection's 500), or
        warmup_epochs: warmup length in epochs (ultralytics' 3); when both are given the longer one wins.
        warmup_max_share: warmup is shortened to at most this share of the run (logged); None: no cap (then a
            warmup as long as the run is an error).
        warmup_ratio: the lr factor at iteration 0.
        iters_per_epoch: filled in by the trainer from the data loader.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        policy: str = "step",
        milestones: Sequence[float] = (8, 11),
        gamma: float = 0.1,
        power: float = 1.0,
        min_ratio: float = 0.0,
        max_epochs: int | None = 12,
        by_epoch: bool = True,
        warmup: str = "linear",
        warmup_iters: int | None = 500,
        warmup_ratio: float = 0.001,
        iters_per_epoch: int = 1,
        warmup_epochs: float | None = None,
        warmup_max_share: float | None = 0.1,
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
        if warmup_max_share is not None and not 0.0 < warmup_max_share <= 1.0:
            raise ValueError(f"warmup_max_share must be in (0, 1] or None, got {warmup_max_share}")
        self.policy, self.gamma = policy, gamma
        self.power = 1.0 if policy == "linear" else power
        self.milestone_values = [float(m) for m in milestones]
        self.milestone_kind = _milestone_kind(milestones) if policy == "step" and milestones else "epoch"
        self.min_ratio, self.by_epoch = min_ratio, by_epoch
        self.warmup_kind, self.warmup_ratio = warmup, warmup_ratio
        self.warmup_iters_asked, self.warmup_epochs_asked = warmup_iters, warmup_epochs
        self.warmup_max_share = warmup_max_share
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        if warmup == "exp" and warmup_ratio == 0.0 and self._asked_warmup() > 0:
            raise ValueError("exp warmup needs warmup_ratio > 0 (it starts at warmup_ratio)")
        self.notes: list[str] = []
        self.fit(max_epochs)
        super().__init__(optimizer, last_epoch)

    def _asked_warmup(self) -> int:
        """The warmup the config asks for, in iterations (before the cap)."""
        by_iters = int(self.warmup_iters_asked or 0)
        by_epochs = round(float(self.warmup_epochs_asked or 0.0) * self.iters_per_epoch)
        return max(by_iters, by_epochs)

    def fit(self, max_epochs: int | None) -> None:
        """(Re)compute the schedule for a run of `max_epochs` epochs: milestone positions, the decay horizon and
        the warmup length. Raises ValueError when the schedule cannot fit the run; `notes` says what was adapted."""
        self.notes = []
        self.max_epochs = None if max_epochs is None else max(1, int(max_epochs))
        total = None if self.max_epochs is None else self.max_epochs * self.iters_per_epoch
        if self.policy == "step":
            if self.milestone_kind == "fraction":
                if self.max_epochs is None:
                    raise ValueError("fractional milestones need max_epochs (the length of the run)")
                unit = self.max_epochs if self.by_epoch else total
                self.milestones = [max(1, round(f * unit)) for f in self.milestone_values]
            else:
                self.milestones = [int(m) if self.by_epoch else int(m) * self.iters_per_epoch
                                   for m in self.milestone_values]
                if self.max_epochs is not None:
                    late = [int(m) for m in self.milestone_values if m >= self.max_epochs]
                    if late:
                        raise ValueError(
                            f"milestone epoch(s) {late} are not before the end of the {self.max_epochs}-epoch run "
                            f"(trainer.max_epochs), so the lr would never step there; give milestones as fractions "
                            f"of the run, e.g. scheduler.milestones=[0.667,0.917], or move them before epoch "
                            f"{self.max_epochs}")
        else:
            self.milestones = []
        warmup = self._asked_warmup()
        if warmup > 0 and total is not None and self.warmup_max_share is not None:
            cap = max(1, int(self.warmup_max_share * total))
            if warmup > cap:
                self.notes.append(f"warmup of {warmup} iterations shortened to {cap}, "
                                  f"{self.warmup_max_share:.0%} of the run's {total} (scheduler.warmup_max_share)")
                warmup = cap
        if warmup > 0 and total is not None and warmup >= total:
            raise ValueError(f"warmup of {warmup} iterations is as long as the whole run ({total} iterations); "
                             f"shorten scheduler.warmup_iters / warmup_epochs or set scheduler.warmup_max_share")
        if warmup > 0 and self.milestones:
            first = self.milestones[0] * (self.iters_per_epoch if self.by_epoch else 1)
            if warmup > first:
                raise ValueError(f"warmup of {warmup} iterations outlasts the first milestone (iteration {first}): "
                                 f"the lr would drop before it ever reached its base value; shorten the warmup or "
                                 f"move the milestones later")
        self.warmup_iters = warmup
        self.warmup = self.warmup_kind if warmup > 0 else "none"
        if hasattr(self, "base_lrs"):  # refitted mid-run: the current iteration's lr follows at once
            self._last_lr = self.get_lr()
            for group, lr in zip(self.optimizer.param_groups, self._last_lr):
                group["lr"] = lr

    def decay(self, iteration: int) -> float:
        t = iteration // self.iters_per_epoch if self.by_epoch else iteration
        if self.policy == "step":
            return self.gamma ** bisect_right(self.milestones, t)
        epochs = self.max_epochs or 1
        horizon = epochs if self.by_epoch else epochs * self.iters_per_epoch
        progress = min(t / horizon, 1.0)
        if self.policy == "cosine":
            return self.min_ratio + (1 - self.min_ratio) * (1 + math.cos(math.pi * progress)) / 2
        if self.policy in ("poly", "linear"):
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

    def describe(self) -> str:
        """One line for the log: what the lr does over this run."""
        parts = [f"{self.warmup} warmup {self.warmup_iters} it" if self.warmup != "none" else "no warmup"]
        if self.policy == "step":
            unit = "epoch" if self.by_epoch else "iteration"
            parts.append(f"x{self.gamma:g} at {unit}s {self.milestones}")
        elif self.policy != "constant":
            parts.append(f"{self.policy} decay to {self.min_ratio:g} x lr by epoch {self.max_epochs}")
        return ", ".join(parts)


class WarmupMultiStepLR(WarmupLR):
    """The "1x" schedule: linear warmup, then × gamma at each milestone (checkpoints name this class)."""

    def __init__(self, optimizer: Optimizer, milestones: Sequence[float] = (8, 11), gamma: float = 0.1,
                 warmup_iters: int | None = 500, warmup_ratio: float = 0.001, iters_per_epoch: int = 1,
                 max_epochs: int | None = None, warmup_epochs: float | None = None,
                 warmup_max_share: float | None = 0.1, warmup: str = "linear", last_epoch: int = -1) -> None:
        super().__init__(optimizer, "step", milestones, gamma, max_epochs=max_epochs, warmup=warmup,
                         warmup_iters=warmup_iters, warmup_ratio=warmup_ratio, iters_per_epoch=iters_per_epoch,
                         warmup_epochs=warmup_epochs, warmup_max_share=warmup_max_share, last_epoch=last_epoch)


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
    try:
        return make(optimizer, **extra)
    except ValueError as exc:  # a schedule that cannot fit the run: say so before any training
        if not isinstance(make, functools.partial) or not issubclass_safe(make.func, WarmupLR):
            raise
        raise ConfigError(f"The learning-rate schedule does not fit this run ({iters_per_epoch} iterations per "
                          f"epoch): {exc}. Keys: scheduler.*, trainer.max_epochs.") from None


def issubclass_safe(obj: Any, cls: type) -> bool:
    return isinstance(obj, type) and issubclass(obj, cls)


def fit_to_epochs(scheduler: Any, max_epochs: int) -> list[str]:
    """Stretch or shrink a schedule to a run of `max_epochs` (after `trainer.max_time` was turned into epochs);
    returns the notes of what was adapted. Schedules that cannot follow (torch's own) are refused before training
    by `check_fits_time_budget`."""
    scheduler.fit(max_epochs)
    return list(scheduler.notes)


def check_fits_time_budget(scheduler: Any) -> None:
    """Under `trainer.max_time` the number of epochs is only known once the first has been timed: the schedule must
    be one that can be refitted, with its milestones as fractions of the run."""
    if not isinstance(scheduler, WarmupLR):
        raise ConfigError(f"trainer.max_time fits the schedule to the budget, which {type(scheduler).__name__} "
                          "cannot follow; use scheduler=cosine, linear, poly or step.")
    if scheduler.policy == "step" and scheduler.milestone_kind == "epoch":
        raise ConfigError(f"trainer.max_time decides the number of epochs, so scheduler.milestones "
                          f"{[int(m) for m in scheduler.milestone_values]} cannot be epochs; give them as fractions "
                          "of the run, e.g. scheduler.milestones=[0.667,0.917].")


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
