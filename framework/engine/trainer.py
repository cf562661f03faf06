"""The training loop, read top to bottom: epochs of batches; forward → loss → backward (AMP, accumulation, DDP)
→ clip → step → callbacks. Everything optional (checkpoints, evaluation, logs, early stop, EMA, …) is a callback
(framework/engine/callbacks/); building the parts from a config is framework/engine/build.py's job.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from omegaconf import OmegaConf
from torch import nn

from framework.engine import distributed
from framework.engine.callbacks.base import CallbackError, LazyFloats, StopTraining, ordered
from framework.engine.checkpoint import save_checkpoint
from framework.engine.setup import PRECISIONS
from framework.engine.signals import GracefulInterrupt
from framework.engine.state import restore_training_state, training_state

logger = logging.getLogger("framework")


def finite_reader(loss: torch.Tensor) -> Callable[[], bool]:
    """Start copying `isfinite(loss)` to the host and return the function that reads it.

    Why: reading it at once would make the host wait for the forward pass before it could queue the backward,
    leaving a GPU idle meanwhile; read after backward is queued, the GPU already runs the backward. On the CPU it
    is a plain read."""
    flag = torch.isfinite(loss.detach())
    if flag.device.type != "cuda":
        return lambda: bool(flag)
    host = torch.empty((), dtype=torch.bool, pin_memory=True)
    host.copy_(flag, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()
    return lambda: bool(copied.synchronize() or host)


class Trainer:
    """Trains `model` on `train_loader` for `max_epochs`; `callbacks` (a list, or a dict name → callback) do the
    rest. Exposes `epoch` (epochs completed), `iter` (optimizer steps), `model`, `optimizer`, `cfg`, `work_dir` and
    `request_stop(reason)`. Under torchrun the model is wrapped in DistributedDataParallel for training."""

    def __init__(self, model: nn.Module, train_loader: Any, optimizer: torch.optim.Optimizer, scheduler: Any = None,
                 callbacks: Mapping[str, Any] | Sequence[Any] = (), *, work_dir: str | Path, max_epochs: int,
                 device: torch.device | str = "cpu", accumulate: int = 1, precision: str = "fp32",
                 grad_clip_norm: float | None = None, channels_last: bool = False, log_interval: int,
                 classes: Sequence[str] = (), cfg: dict[str, Any] | None = None,
                 find_unused_parameters: bool = False) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"trainer.precision={precision!r}: choose one of {', '.join(PRECISIONS)}.")
        if accumulate < 1:
            raise ValueError(f"trainer.accumulate={accumulate}: it counts batches per optimizer step, at least 1.")
        self.model, self.train_loader, self.optimizer, self.scheduler = model, train_loader, optimizer, scheduler
        self.callbacks = ordered(callbacks)
        self.work_dir, self.max_epochs, self.device = Path(work_dir), max_epochs, torch.device(device)
        self.accumulate, self.grad_clip_norm, self.log_interval = accumulate, grad_clip_norm, max(1, log_interval)
        self.amp_dtype = PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.classes, self.cfg = list(classes), cfg or {}
        self.dist = distributed.current()
        self.train_model: nn.Module = model
        if self.dist.enabled:
            self.train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters)
        self.eval_model: nn.Module = model  # what is evaluated and saved as `model`: the EMA callback swaps it
        self.epoch = self.iter = self.batch_in_epoch = 0
        self.stop_reason: str | None = None
        self.interrupt: GracefulInterrupt | None = None
        self.grad_norm: float | None = None  # measured at log steps and when clipping
        self.step_images, self.step_data_time, self.step_skipped = 0, 0.0, False
        self.start_time, self.first_epoch = time.monotonic(), 0
        self.results: dict[str, Any] = {}  # what callbacks report back from fit (best, last metrics)
        self.last_eval: Any = None  # the latest EvalResult (metrics, detections), for callbacks that draw it
        self.resume_from: Path | None = None  # fit() continues from this checkpoint (build_trainer sets `resume=`)
        self.resumed_from: Path | None = None

    # ------------------------------------------------------------------------------------------ the run
    def fit(self, resume_from: str | Path | None = None) -> dict[str, Any]:
        """Train to `max_epochs` (or until a callback, a signal or the time budget stops it)."""
        if self.dist.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            (self.work_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(self.cfg), resolve=True))
        resume_from = resume_from or self.resume_from
        if resume_from is not None and not restore_training_state(self, resume_from):
            return {**self.results, "epoch": self.epoch, "iter": self.iter, "stop_reason": None}
        n_params = sum(p.numel() for p in self.model.parameters())
        logger.info(f"Training {'/'.join(type(getattr(self.model, p, self.model)).__name__ for p in ('backbone', 'neck', 'head'))}"
                    f" ({n_params / 1e6:.2f} M parameters) on {self.device}"
                    f"{f' x {self.dist.world_size} processes' if self.dist.enabled else ''} for {self.max_epochs} "
                    f"epochs x {self.steps_per_epoch} iterations; outputs in {self.work_dir}")
        self.start_time, self.first_epoch = time.monotonic(), self.epoch
        try:
            with GracefulInterrupt() as self.interrupt:
                self.call("on_train_start")
                while self.epoch < self.max_epochs and self.stop_reason is None:
                    self.call("on_epoch_start")
                    self.train_one_epoch()
                    if self.stop_reason is not None:  # stopped mid-epoch (time budget, signal, a callback)
                        self.save("last.pth")
                        break
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    self.call("on_epoch_end")
                    self.agree_on_stop(end_of_epoch=True)
        except CallbackError:
            self.save("last.pth")  # nothing trained is lost; the message names the callback
            raise
        finally:
            for _, callback in self.callbacks:  # writers are closed whatever happened
                getattr(callback, "close", lambda: None)()
        if self.stop_reason is not None:
            logger.info(f"Stopped: {self.stop_reason}. Saved {self.work_dir / 'checkpoints' / 'last.pth'}; continue "
                        f"with `python tools/train.py … resume=true` (or resume=<path to last.pth>).")
        self.call("on_train_end")
        return {**self.results, "epoch": self.epoch, "iter": self.iter, "stop_reason": self.stop_reason}

    def train_one_epoch(self) -> None:
        self.train_model.train()
        set_epoch = getattr(getattr(self.train_loader, "batch_sampler", None), "set_epoch", None)
        if set_epoch is not None:  # the data order (and, in the workers, the pipeline) of this epoch
            set_epoch(self.epoch, self.max_epochs, start_batch=self.batch_in_epoch)
        n_batches, step_losses = self.batches_per_epoch, {}
        self.step_images, self.step_data_time, skip_group = 0, 0.0, False
        data_start = time.perf_counter()
        for b, batch in enumerate(self.train_loader, start=self.batch_in_epoch):
            self.step_data_time += time.perf_counter() - data_start
            batch = batch.to(self.device, non_blocking=True)
            group_start = b // self.accumulate * self.accumulate
            group_size = min(self.accumulate, n_batches - group_start)  # the epoch's last step may be shorter
            stepping = b + 1 == group_start + group_size
            no_sync = getattr(self.train_model, "no_sync", None)
            with no_sync() if no_sync is not None and not stepping else contextlib.nullcontext():
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    losses = self.train_model(batch.images.contiguous(memory_format=self.memory_format),
                                              batch.targets, image_sizes=batch.image_sizes)
                loss = sum(losses.values())
                read_finite = finite_reader(loss)
                self.scaler.scale(loss / group_size).backward()
                finite = not distributed.any_rank(not read_finite(), self.sync_device)
            if not finite:  # the whole optimizer step makes no update; the callback decides whether to go on
                skip_group = True
                ids = [t.get("source_ids", t.get("image_id")) for t in batch.targets]
                self.call("on_nonfinite_loss", LazyFloats(losses), ids)
            for k, v in losses.items():
                step_losses[k] = step_losses.get(k, 0.0) + v.detach().float() / group_size
            self.step_images += len(batch)
            if stepping:
                self.optimizer_step(update=not skip_group)
                self.batch_in_epoch, self.step_skipped = b + 1, skip_group
                self.call("on_step_end", LazyFloats(step_losses))
                step_losses, self.step_images, self.step_data_time, skip_group = {}, 0, 0.0, False
                if self.agree_on_stop():
                    break
            data_start = time.perf_counter()

    def optimizer_step(self, update: bool = True) -> None:
        """Unscale, clip, step and advance the schedule. With `update=False` (a non-finite step) the gradients are
        dropped and only the counters and the schedule advance, so the run keeps its shape."""
        self.grad_norm = None
        if update:
            measure = self.is_log_step()
            if self.grad_clip_norm or measure:
                self.scaler.unscale_(self.optimizer)
                norm = nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
                if self.grad_clip_norm:
                    nn.utils.clip_grads_with_norm_(self.model.parameters(), self.grad_clip_norm, norm)
                self.grad_norm = float(norm) if measure else None
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.iter += 1
        if self.scheduler is not None:
            self.scheduler.step()

    # ------------------------------------------------------------------------------------------ for callbacks
    def call(self, event: str, *args: Any) -> None:
        """Run `event` on every callback that defines it; one that raises stops training with its name."""
        for name, callback in self.callbacks:
            handler = getattr(callback, event, None)
            if handler is None:
                continue
            try:
                handler(self, *args)
            except (StopTraining, CallbackError, KeyboardInterrupt):
                raise
            except Exception as exc:
                kind = f"{type(callback).__module__}.{type(callback).__qualname__}"
                raise CallbackError(f"Callback '{name}' ({kind}) raised in {event} after {self.epoch} "
                                    f"epoch(s) and {self.iter} iteration(s): {type(exc).__name__}: {exc}. Training stopped; "
                                    f"{self.work_dir / 'checkpoints' / 'last.pth'} holds the state before it; fix "
                                    f"or remove the callback (~callbacks.{name}) and resume=true.") from exc

    def callback(self, kind: type) -> Any:
        """The first callback of class `kind`, or None (e.g. visualization asks for the TensorBoard writer)."""
        return next((c for _, c in self.callbacks if isinstance(c, kind)), None)

    def request_stop(self, reason: str) -> None:
        """Stop after the current step (mid-epoch: last.pth is saved) with `reason` in the log."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def log(self, mode: str, record: dict[str, Any]) -> None:
        """Hand a record (train/val/pipeline) to the logging callbacks (metrics.jsonl, TensorBoard)."""
        self.call("on_log", mode, record)

    def agree_on_stop(self, end_of_epoch: bool = False) -> bool:
        """True when a stop was requested or a signal arrived, on any rank: every rank stops at the same step."""
        signalled = self.interrupt is not None and self.interrupt.requested
        wanted = self.stop_reason is not None or signalled
        if not (distributed.any_rank(wanted, self.sync_device) if self.dist.enabled else wanted):
            return False
        where = f"end of epoch {self.epoch}" if end_of_epoch else f"epoch {self.epoch + 1}, iteration {self.iter}"
        if signalled:
            self.stop_reason = f"interrupted by {self.interrupt.name} at {where}"
        self.request_stop(f"stopped by another process at {where}")
        return True

    def is_log_step(self) -> bool:
        """The step about to complete is a log step (every `log_interval`, and the epoch's last)."""
        return (self.iter + 1) % self.log_interval == 0 or self.batch_in_epoch + self.step_batches >= self.batches_per_epoch

    @property
    def step_batches(self) -> int:
        return min(self.accumulate, self.batches_per_epoch - self.batch_in_epoch)

    @property
    def batches_per_epoch(self) -> int:
        """All batches of an epoch (a sampler resumed mid-epoch reports only those left)."""
        sampler = getattr(self.train_loader, "batch_sampler", self.train_loader)  # or a plain list of batches
        return len(getattr(sampler, "batch_sampler", sampler))

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.accumulate)

    @property
    def sync_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def state_dict(self) -> dict[str, Any]:
        return training_state(self)

    def save(self, name: str) -> Path:
        """Write checkpoints/`name` atomically (rank 0; every rank must call it: the state gathers all ranks')."""
        path = self.work_dir / "checkpoints" / name
        state = self.state_dict()
        if self.dist.is_main:
            save_checkpoint(state, path)
        return path
