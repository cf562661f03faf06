"""The training loop: epochs of SGD steps, evaluation every N epochs, checkpoints and logs.

Short on purpose (in the spirit of torchvision's detection references): everything that varies between models
lives in the model and its head; everything that varies between runs lives in the config.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from framework.config.validation import ConfigError
from framework.data.classes import check_num_classes, classes_source
from framework.data.loader import Batch, build_dataloader
from framework.data.pipeline_dataset import PipelineDataset
from framework.engine import distributed
from framework.engine.checkpoint import (
    CheckpointError, find_last_checkpoint, load_checkpoint, prune_checkpoints, rng_state, save_checkpoint, set_rng_state,
)
from framework.engine.ema import ModelEMA
from framework.engine.run_log import MetricsWriter, log_to_files
from framework.engine.optim import build_optimizer, scaled_lr, split_optimizer_node
from framework.engine.progress import Window, format_eta, memory_gib, stats_text
from framework.engine.recipes import recipe_hint
from framework.engine.schedulers import (
    build_scheduler, check_fits_time_budget, fit_to_epochs, load_scheduler_position,
)
from framework.engine.time_budget import epochs_within_budget
from framework.engine.signals import GracefulInterrupt
from framework.evaluation.build import build_evaluator, ground_truth
from framework.evaluation.coco import format_metrics_table
from framework.evaluation.distributed import gather_predictions

logger = logging.getLogger("framework")
# a short bar so that the losses, lr, images/s and the run's ETA fit on one terminal line
_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar:12}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN/inf loss (more often than trainer.skip_nonfinite allows); the message says where."""


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def finite_reader(loss: torch.Tensor) -> Callable[[], bool]:
    """Start copying `isfinite(loss)` to the host and return the function that reads it.

    Why: reading it at once (`bool(...)`) would make the host wait for the forward pass before it could queue the
    backward, leaving a GPU idle meanwhile. Read after backward is queued, the wait is for the forward only, while
    the GPU already runs the backward. On the CPU it is a plain read."""
    flag = torch.isfinite(loss.detach())
    if flag.device.type != "cuda":
        return lambda: bool(flag)
    host = torch.empty((), dtype=torch.bool, pin_memory=True)
    host.copy_(flag, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def read() -> bool:
        copied.synchronize()
        return bool(host)

    return read


def compile_model(model: nn.Module, **options: Any) -> None:
    """`torch.compile` the backbone and the neck in place (`Module.compile`, `options` passed on), so the state-dict
    keys, checkpoints and EMA stay as they are. The head is left eager: its assignment and post-processing have
    data-dependent shapes that would recompile on every batch."""
    for name in ("backbone", "neck"):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            part.compile(**options)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of this process; under torchrun, `auto`/`cuda` mean the GPU of this process's local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is available; use trainer.device=cpu or auto.")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def per_rank_batch_size(global_batch_size: int, world_size: int, key: str = "dataset.batch_size") -> int:
    """`dataset.batch_size` is the global batch: each of the `world_size` processes takes an equal share."""
    if global_batch_size % world_size:
        raise ConfigError(f"{key}={global_batch_size} is the global batch size and must divide evenly over the "
                          f"{world_size} processes; use a multiple of {world_size}, e.g. "
                          f"{key}={max(world_size, global_batch_size // world_size * world_size)}.")
    return global_batch_size // world_size


def config_to_save(cfg: DictConfig) -> dict[str, Any]:
    """The config as composed, with interpolations kept (so `tools/test.py dataset.root=…` still flows into
    `dataset.val.root`), except the values that only Hydra's runtime can resolve (run name and folder)."""
    saved = OmegaConf.to_container(cfg, resolve=False)
    for key in ("experiment_name", "work_dir"):
        if key in cfg:
            saved[key] = cfg[key]
    return saved


class Runner:
    """Owns one run: model, data, optimization, evaluation and outputs in `work_dir`.

    Under torchrun every rank builds the same runner; the model is wrapped in DistributedDataParallel for training,
    each rank reads its shard of the data, evaluation gathers all ranks' detections, and only rank 0 writes files.
    """

    def __init__(
        self,
        model: nn.Module,
        val_loader: Any,
        evaluator: Any,
        work_dir: str | Path,
        device: torch.device | str = "cpu",
        train_loader: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        max_epochs: int = 12,
        eval_interval: int = 1,
        log_interval: int = 20,
        grad_clip_norm: float | None = None,
        best_metric: str = "bbox_mAP",
        progress_bar: bool = True,
        channels_last: bool = False,
        plots: bool = False,
        config: dict[str, Any] | None = None,
        precision: str = "fp32",
        accumulate: int = 1,
        ema: ModelEMA | None = None,
        checkpoint_interval: int = 0,
        keep_checkpoints: int | None = 3,
        patience: int | None = None,
        max_time: float | None = None,
        vis_images: int = 4,
        find_unused_parameters: bool = False,
        resume_from: str | Path | None = None,
        skip_nonfinite: int = 0,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision={precision!r}: choose one of {', '.join(PRECISIONS)}.")
        if accumulate < 1:
            raise ConfigError(f"trainer.accumulate={accumulate}: it counts batches per optimizer step, at least 1.")
        self.model, self.device = model, torch.device(device)
        self.dist = distributed.current()
        if best_metric == "auto":  # the evaluator's main number: bbox_mAP (COCO), voc_mAP (VOC)
            best_metric = getattr(evaluator, "primary_metric", "bbox_mAP")
        self.train_loader, self.val_loader, self.evaluator = train_loader, val_loader, evaluator
        self.optimizer, self.scheduler = optimizer, scheduler
        self.work_dir = Path(work_dir)
        self.max_epochs, self.eval_interval, self.log_interval = max_epochs, max(1, eval_interval), max(1, log_interval)
        self.grad_clip_norm, self.best_metric = grad_clip_norm, best_metric
        self.progress_bar = progress_bar and self.dist.is_main
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.plots, self.vis_images = plots, vis_images
        self.amp_dtype = PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.accumulate, self.ema = accumulate, ema
        self.checkpoint_interval, self.keep_checkpoints = checkpoint_interval, keep_checkpoints
        self.patience, self.max_time = patience, max_time
        self.resume_from = Path(resume_from) if resume_from else None
        self.train_model: nn.Module = model
        if self.dist.enabled and train_loader is not None:
            from torch.nn.parallel import DistributedDataParallel

            self.train_model = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters)
        self._detections: dict[int, dict[str, torch.Tensor]] = {}
        self._ground_truth: list[dict[str, Any]] | None = None
        self._vis: list[tuple[torch.Tensor, dict[str, Any]]] | None = None
        self.config = config or {}
        self.epoch = 0  # epochs completed
        self.iter = 0  # optimizer steps completed
        self.batch_in_epoch = 0  # batches of the current epoch already trained (non-zero only mid-epoch)
        self.best: dict[str, Any] = {"metric": best_metric, "value": float("-inf"), "epoch": None}
        self.stop_reason: str | None = None
        self.skip_nonfinite, self.nonfinite_skipped, self.nonfinite_in_epoch = skip_nonfinite, 0, 0
        self._interrupt: GracefulInterrupt | None = None
        self._writer: MetricsWriter | None = None
        self._start_time = time.monotonic()
        self._first_epoch = 0  # the epoch this invocation started at (the time budget is this invocation's)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and kept as best.pth: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def batches_per_epoch(self) -> int:
        """All batches of an epoch (an `EpochBatchSampler` resumed mid-epoch reports only those left)."""
        sampler = self.train_loader.batch_sampler
        return len(getattr(sampler, "batch_sampler", sampler))

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.accumulate)

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg: DictConfig, training: bool = True) -> "Runner":
        from framework.config.instantiation import check_targets, instantiate

        check_targets(cfg)  # every component, before anything is imported or built (configs from checkpoints too)
        info = distributed.init_distributed()
        seed_everything(cfg.seed, cfg.deterministic)  # the same initial weights on every rank
        t, data = cfg.trainer, cfg.dataset
        device = resolve_device(t.device, info.local_rank)
        from framework.data.bad_images import screen_dataset
        from framework.data.scan import scan_images

        def scanned(dataset: Any) -> Any:  # rank 0 reads the image files, every rank applies what it found
            return distributed.broadcast_object(scan_images(dataset) if info.is_main else None)

        bad_images = dict(scan=data.scan_images, on_bad_image=data.on_bad_image, scanner=scanned)
        val_set = screen_dataset(instantiate(data.val, transforms=instantiate(cfg.pipeline.val)), "val",
                                 substitute=True, **bad_images)
        given = data.num_classes
        data.num_classes = check_num_classes(given, val_set)  # the model and the saved config get the data's count
        if given is None:
            logger.info(f"{val_set.num_classes} classes from {classes_source(val_set)}: {', '.join(val_set.classes)}")
        model = instantiate(cfg.model)
        if model.num_classes != val_set.num_classes:
            raise ConfigError(
                f"The model predicts {model.num_classes} classes (model.head.num_classes) but the dataset at "
                f"{data.root} has {val_set.num_classes} ({', '.join(val_set.classes[:10])}"
                f"{'…' if val_set.num_classes > 10 else ''}); leave model.head.num_classes=${{dataset.num_classes}}."
            )
        if training and t.sync_bn and info.enabled:
            if device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
                n_sync = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
                logger.info(f"trainer.sync_bn: {n_sync} BatchNorm layers compute statistics over the global batch")
            else:
                logger.warning("trainer.sync_bn=true is ignored on CPU (torch's SyncBatchNorm runs on GPUs only); "
                               "each process keeps its own BatchNorm statistics.")
        model.to(device, memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)
        torch.backends.cudnn.benchmark = bool(t.cudnn_benchmark) and not cfg.deterministic
        if t.compile:
            compile_model(model)
        if info.enabled:
            seed_everything(cfg.seed + info.rank, cfg.deterministic)  # then different random draws per rank
        dist_args = dict(rank=info.rank, world_size=info.world_size)
        val_loader = build_dataloader(val_set, max(1, data.val_batch_size // info.world_size), data.num_workers,
                                      shuffle=False, group_by_aspect_ratio=data.group_by_aspect_ratio, **dist_args)
        evaluator = build_evaluator(val_set, data.metric, cfg.evaluation.backend)
        kwargs: dict[str, Any] = {}
        if training:
            batch_size = per_rank_batch_size(data.batch_size, info.world_size)
            train_raw = screen_dataset(instantiate(data.train), "train", **bad_images)
            if list(train_raw.classes) != list(val_set.classes):
                raise ConfigError(
                    f"The training split's classes ({len(train_raw.classes)}, from {classes_source(train_raw)}) "
                    f"differ from the validation split's ({len(val_set.classes)}, from {classes_source(val_set)}); "
                    "both splits must use one class list.")
            train_set = PipelineDataset(train_raw, instantiate(cfg.pipeline.train), on_bad_image=data.on_bad_image)
            if len(train_set) < data.batch_size:
                raise ConfigError(f"The training set has {len(train_set)} images, fewer than dataset.batch_size="
                                  f"{data.batch_size}; lower the batch size.")
            train_loader = build_dataloader(train_set, batch_size, data.num_workers, shuffle=True, seed=cfg.seed,
                                            drop_last=True, group_by_aspect_ratio=data.group_by_aspect_ratio,
                                            pin_memory=device.type == "cuda", **dist_args)
            node, settings = split_optimizer_node(cfg.optimizer)
            lr_scale = _lr_scale(float(node.lr), settings.get("auto_scale_lr") or {}, batch_size, info.world_size,
                                 t.accumulate)
            optimizer = build_optimizer(instantiate(node), model, lr_scale=lr_scale, **(settings.get("paramwise") or {}))
            steps = math.ceil(len(train_loader) / t.accumulate)
            scheduler = build_scheduler(instantiate(cfg.scheduler), optimizer, steps, lr_scale=lr_scale)
            if t.max_time is not None:
                check_fits_time_budget(scheduler)
            hint = recipe_hint(model, scheduler)
            if hint:
                logger.warning(hint)
            ema = ModelEMA(model, t.ema.decay, t.ema.tau) if t.ema.enabled else None
            kwargs = dict(train_loader=train_loader, optimizer=optimizer, scheduler=scheduler, ema=ema,
                          resume_from=_resume_path(cfg))
        return cls(
            model, val_loader, evaluator, cfg.work_dir, device, max_epochs=t.max_epochs, eval_interval=t.eval_interval,
            log_interval=t.log_interval, grad_clip_norm=t.grad_clip_norm, best_metric=t.best_metric,
            progress_bar=t.progress_bar, channels_last=t.channels_last, plots=cfg.evaluation.plots,
            config=config_to_save(cfg), precision=t.precision, accumulate=t.accumulate,
            checkpoint_interval=t.checkpoint_interval, keep_checkpoints=t.keep_checkpoints, patience=t.patience,
            max_time=t.max_time, vis_images=t.vis_images, find_unused_parameters=t.find_unused_parameters,
            skip_nonfinite=t.skip_nonfinite, **kwargs,
        )

    @classmethod
    def for_checkpoint(cls, checkpoint: str | Path, cfg: DictConfig, overrides: list[str]) -> "Runner":
        """An evaluation runner for a saved checkpoint: its own config, with the command line's `overrides` taken
        from the freshly composed `cfg` (tools/test.py, tools/plot_run.py)."""
        from framework.config.overrides import merge_saved_config

        ckpt = load_checkpoint(checkpoint, purpose="model")  # a clear error unless it holds model + config
        runner = cls.from_config(merge_saved_config(ckpt["config"], cfg, overrides), training=False)
        runner.model.load_state_dict(ckpt["model"])
        runner.epoch = ckpt.get("epoch", 0)
        return runner

    # ------------------------------------------------------------------------------------------------ training
    def train(self) -> dict[str, Any]:
        if self.train_loader is None or self.optimizer is None:
            raise RuntimeError("This runner was built without training parts (from_config(training=False)).")
        if self.dist.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            (self.work_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(self.config), resolve=True))
        if self.resume_from is not None and not self.resume(self.resume_from):
            return {"best": dict(self.best), "last": {}}
        self._writer = MetricsWriter(self.work_dir) if self.dist.is_main else None
        n_params = sum(p.numel() for p in self.model.parameters())
        logger.info(f"Training {type(self.model.backbone).__name__}/{type(self.model.neck).__name__}/"
                    f"{type(self.model.head).__name__} ({n_params / 1e6:.2f} M parameters) on {self.device}"
                    f"{f' x {self.dist.world_size} processes' if self.dist.enabled else ''} for {self.max_epochs} "
                    f"epochs x {self.steps_per_epoch} iterations; outputs in {self.work_dir}")
        describe = getattr(self.scheduler, "describe", None)
        if describe is not None:
            notes = "".join(f"; {n}" for n in getattr(self.scheduler, "notes", []))
            logger.info(f"Schedule: {describe()}{notes}")
        metrics: dict[str, float] = {}
        self._start_time, self._first_epoch = time.monotonic(), self.epoch
        try:
            with GracefulInterrupt() as self._interrupt:
                metrics = self._train_epochs()
        finally:
            if self._writer is not None:
                self._writer.close()
        if self.stop_reason is not None:
            logger.info(f"Stopped: {self.stop_reason}. Saved {self.work_dir / 'checkpoints' / 'last.pth'}; continue "
                        f"with `python tools/train.py … resume=true` (or resume=<path to last.pth>).")
        best = f"{self.best['value']:.4f} at epoch {self.best['epoch']}" if self.best["epoch"] else "not reached"
        logger.info(f"Done. Best {self.best_metric} = {best}; checkpoints in {self.work_dir / 'checkpoints'}")
        self._plot_results()
        return {"best": dict(self.best), "last": metrics}

    @property
    def interrupted(self) -> int | None:
        """The signal (SIGINT/SIGTERM) that stopped training, if one did: tools/train.py exits with 128 + it."""
        return self._interrupt.received if self._interrupt is not None else None

    def _train_epochs(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        while self.epoch < self.max_epochs and self.stop_reason is None:
            self._train_epoch()
            if self.stop_reason is not None:  # stopped mid-epoch (wall-clock budget, signal)
                self.save("last.pth")
                break
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            if self.epoch % self.eval_interval == 0 or self.epoch == self.max_epochs:
                metrics = self.evaluate()
                self._update_best(metrics)
            self._check_stop(end_of_epoch=True)
            if self.max_time is not None and self.stop_reason is None:
                self._fit_epochs_to_budget()
            self.save("last.pth")
            if self.checkpoint_interval and self.epoch % self.checkpoint_interval == 0:
                self.save(f"epoch_{self.epoch}.pth")
                if self.dist.is_main:
                    prune_checkpoints(self.work_dir / "checkpoints", self.keep_checkpoints)
        return metrics

    def _fit_epochs_to_budget(self) -> None:
        """`trainer.max_time`: re-estimate how many epochs fit in the budget from the epochs timed so far (the same
        number on every rank: rank 0's estimate), and fit the schedule and the pipeline (close-mosaic) to it."""
        done = self.epoch - self._first_epoch
        if done < 1 or self.epoch >= self.max_epochs:  # a run that reached its fitted end stays ended
            return
        elapsed = time.monotonic() - self._start_time
        fitted = self._first_epoch + epochs_within_budget(self.max_time * 3600, elapsed, done)
        fitted = int(distributed.broadcast_object(fitted))
        if fitted == self.max_epochs:
            return
        notes = fit_to_epochs(self.scheduler, fitted)
        logger.info(f"trainer.max_time={self.max_time} h: {elapsed / done:.1f} s per epoch, so {fitted} epochs fit "
                    f"(was {self.max_epochs}); schedule fitted: {self.scheduler.describe()}"
                    + "".join(f"; {n}" for n in notes))
        self.max_epochs = fitted

    def _start_epoch_pipeline(self) -> None:
        """Tell the sampler (hence the workers) and the main-process pipeline which epoch starts (and, after a
        mid-epoch resume, how many of its batches are done), and log what the pipeline applies in it."""
        loader = self.train_loader
        set_epoch = getattr(getattr(loader, "batch_sampler", None), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(self.epoch, self.max_epochs, start_batch=self.batch_in_epoch)
        pipeline = getattr(getattr(loader, "dataset", None), "pipeline", None)
        if hasattr(pipeline, "set_epoch"):
            pipeline.set_epoch(self.epoch, self.max_epochs)
            summary = pipeline.epoch_summary()
            if summary:
                logger.info(f"Epoch {self.epoch + 1}/{self.max_epochs} pipeline: "
                            + ", ".join(f"{k}={v:.3g}" for k, v in summary.items()))
                if self._writer is not None:
                    self._writer.write({"epoch": self.epoch + 1, **summary}, self.epoch + 1, "pipeline")

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _train_epoch(self) -> None:
        self.train_model.train()
        self._start_epoch_pipeline()
        n_batches = self.batches_per_epoch
        steps = self.steps_per_epoch
        bar = tqdm(total=steps, initial=self.batch_in_epoch // self.accumulate, desc=f"Epoch {self.epoch + 1}/"
                   f"{self.max_epochs}", disable=None if self.progress_bar else True, dynamic_ncols=True, leave=True,
                   file=sys.stderr, bar_format=_BAR_FORMAT)
        window, run_start, start_iter = Window(), time.perf_counter(), self.iter
        data_start, skip_group, self.nonfinite_in_epoch = time.perf_counter(), False, 0
        for b, batch in enumerate(self.train_loader, start=self.batch_in_epoch):
            data_time = time.perf_counter() - data_start
            batch: Batch = batch.to(self.device, non_blocking=True)
            group_start = b // self.accumulate * self.accumulate
            group_size = min(self.accumulate, n_batches - group_start)  # the epoch's last step may be shorter
            stepping = b + 1 == group_start + group_size
            sync = self.train_model.no_sync() if self.dist.enabled and not stepping else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    losses = self.train_model(batch.images.contiguous(memory_format=self.memory_format),
                                              batch.targets, image_sizes=batch.image_sizes)
                loss = sum(losses.values())
                read_finite = finite_reader(loss)
                self.scaler.scale(loss / group_size).backward()
                finite = self._check_finite(read_finite(), losses, batch)
                if not finite:  # skipped (trainer.skip_nonfinite): this whole optimizer step makes no update
                    skip_group = True
            if finite:
                window.add_batch(losses, len(batch), data_time)
            if stepping:
                log_now = (self.iter + 1) % self.log_interval == 0 or b + 1 == n_batches
                grad_norm = self._optimizer_step(measure=log_now, update=not skip_group)
                skip_group = False
                self.batch_in_epoch = b + 1
                window.steps += 1
                bar.update(1)
                if self._writer is not None:
                    self._writer.scalar("train/lr_iter", self.optimizer.param_groups[0]["lr"], self.iter)
                if log_now:
                    self._log_window(window, bar, grad_norm, run_start, start_iter, steps)
                if self._check_stop():
                    break
            data_start = time.perf_counter()
        bar.close()
        if self.nonfinite_in_epoch:
            logger.warning(f"Epoch {self.epoch + 1}: {self.nonfinite_in_epoch} step(s) skipped for a non-finite loss "
                           f"({self.nonfinite_skipped} of trainer.skip_nonfinite={self.skip_nonfinite} used).")
        from framework.data.bad_images import skipped_images_report

        skipped = skipped_images_report(self.epoch + 1, self.train_loader, distributed.gather_objects)
        if skipped and self.dist.is_main:
            logger.info(skipped)

    def _optimizer_step(self, measure: bool, update: bool = True) -> float | None:
        """Unscale, clip, step, update the EMA and the schedule; returns the gradient norm if clipped or asked.
        With `update=False` (a skipped non-finite step) the gradients are dropped and only the counters and the
        schedule advance, so the run keeps its shape."""
        grad_norm = None
        if not update:
            self.optimizer.zero_grad(set_to_none=True)
            self.iter += 1
            if self.scheduler is not None:
                self.scheduler.step()
            return None
        if self.grad_clip_norm or measure:
            self.scaler.unscale_(self.optimizer)
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            norm = nn.utils.get_total_norm(grads)
            if self.grad_clip_norm:
                nn.utils.clip_grads_with_norm_(self.model.parameters(), self.grad_clip_norm, norm)
            grad_norm = float(norm) if measure else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.iter += 1
        if self.ema is not None:
            self.ema.update(self.model)
        if self.scheduler is not None:
            self.scheduler.step()
        return grad_norm

    def _check_finite(self, finite_here: bool, losses: dict[str, torch.Tensor], batch: Batch) -> bool:
        """True when the loss is finite on every rank; else report it (iteration, loss terms, image ids) and either
        skip the step (up to trainer.skip_nonfinite times) or stop, keeping the last checkpoint as it was."""
        bad_here = not finite_here
        bad = distributed.any_rank(bad_here, self._sync_device) if self.dist.enabled else bad_here
        if not bad:
            return True
        if bad_here:
            terms = ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items())
            ids = [t.get("source_ids", t.get("image_id")) for t in batch.targets]
            where = f"epoch {self.epoch + 1}, iteration {self.iter + 1}"
            culprits = ", ".join(k for k, v in losses.items() if not bool(torch.isfinite(v)))
            detail = f"Non-finite loss at {where}: {culprits} ({terms}); images in the batch: {ids}"
        else:
            detail = f"Non-finite loss on another process at epoch {self.epoch + 1}, iteration {self.iter + 1}"
        self.nonfinite_skipped += 1
        if self.nonfinite_skipped <= self.skip_nonfinite:
            self.nonfinite_in_epoch += 1
            logger.warning(f"{detail}. Step skipped ({self.nonfinite_skipped} of trainer.skip_nonfinite="
                           f"{self.skip_nonfinite}).")
            return False
        hint = " or use trainer.precision=bf16/fp32 (fp16 overflows)" if self.amp_dtype == torch.float16 else ""
        kept = self.work_dir / "checkpoints" / "last.pth"
        kept_text = f"{kept} is kept as it was" if kept.is_file() else "no checkpoint had been written yet"
        used = (f"; the {self.skip_nonfinite} skips allowed by trainer.skip_nonfinite are used up"
                if self.skip_nonfinite else "")
        raise NonFiniteLossError(f"{detail}{used}. Training stopped; {kept_text}. Lower optimizer.lr or set "
                                 f"trainer.grad_clip_norm{hint}, check those images' annotations, or allow skipping "
                                 "such steps with trainer.skip_nonfinite=N.")

    def _log_window(self, window: Window, bar: tqdm, grad_norm: float | None, run_start: float, start_iter: int,
                    steps: int) -> None:
        stats: dict[str, Any] = {k: float(v) for k, v in distributed.all_reduce_mean(window.mean_losses()).items()}
        stats["loss"] = sum(stats.values())
        stats.update(lr=self.optimizer.param_groups[0]["lr"], grad_norm=grad_norm,
                     memory_gib=memory_gib(self.device), **window.timing(self.dist.world_size))
        if self.scaler.is_enabled():
            stats["loss_scale"] = self.scaler.get_scale()
        done = self.iter - start_iter
        eta = (time.perf_counter() - run_start) / max(done, 1) * (self.max_epochs * steps - self.iter)
        it = math.ceil(self.batch_in_epoch / self.accumulate)
        line = f"Epoch {self.epoch + 1}/{self.max_epochs} iter {it}/{steps} {stats_text(stats)} eta {format_eta(eta)}"
        if not bar.disable:
            bar.set_postfix_str(f"{stats_text(stats)} run eta {format_eta(eta)}", refresh=False)
            log_to_files(line)
        elif self.dist.is_main:
            logger.info(line)
        if self._writer is not None:
            self._writer.write({**{k: v for k, v in stats.items() if v is not None}, "epoch": self.epoch + 1,
                                "iter": self.iter}, self.iter, "train")
        window.reset()

    @property
    def _sync_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _check_stop(self, end_of_epoch: bool = False) -> bool:
        """Stop when the wall-clock budget is spent or SIGINT/SIGTERM arrived (checked after every step) — the same
        decision on every rank."""
        if self.stop_reason is not None:
            return True
        over = self.max_time is not None and time.monotonic() - self._start_time > self.max_time * 3600
        signalled = self._interrupt is not None and self._interrupt.requested
        if not self.dist.enabled and not (over or signalled):
            return False
        if self.dist.enabled and not distributed.any_rank(over or signalled, self._sync_device):
            return False
        where = f"end of epoch {self.epoch}" if end_of_epoch else f"epoch {self.epoch + 1}, iteration {self.iter}"
        if signalled:
            self.stop_reason = f"interrupted by {self._interrupt.name} at {where}"
        elif over:
            self.stop_reason = f"trainer.max_time={self.max_time} h reached at {where}"
        else:
            self.stop_reason = f"interrupted by a signal to another process at {where}"
        return True

    # ------------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict_loader(self) -> None:
        """Run the evaluated model over the validation loader (each rank its shard) and feed the evaluator."""
        model = self.eval_model
        model.eval()
        distributed.broadcast_buffers(model)  # rank 0's BatchNorm statistics, as saved in its checkpoint
        self.evaluator.reset()
        all_ids: list[int] = []
        all_dets: list[dict[str, torch.Tensor]] = []
        for batch in tqdm(self.val_loader, desc="Evaluating", disable=None if self.progress_bar else True,
                          dynamic_ncols=True, leave=False, file=sys.stderr):
            batch = batch.to(self.device, non_blocking=True)
            orig_sizes = [tuple(int(s) for s in t["orig_size"]) for t in batch.targets]
            dets = model(batch.images.contiguous(memory_format=self.memory_format), image_sizes=batch.image_sizes,
                         orig_sizes=orig_sizes)
            all_ids += [int(t["image_id"]) for t in batch.targets]
            all_dets += [{k: v.cpu() for k, v in d.items()} for d in dets]
        all_ids, all_dets = gather_predictions(all_ids, all_dets)  # under torchrun: every rank's, each image once
        if self.dist.is_main:
            self.evaluator.process(all_ids, all_dets)
        keep = set(all_ids) if self.plots else {int(t["image_id"]) for _, t in self._vis_samples()}
        self._detections = {i: d for i, d in zip(all_ids, all_dets) if i in keep}

    def evaluate(self, plot_dir: str | Path | None = None) -> dict[str, float]:
        """Predict on the validation set and score it (on rank 0; the numbers are shared with every rank); with
        plots on, also write the PR, F1 and confusion plots to `plot_dir` (default: the run folder) and TensorBoard."""
        start = time.perf_counter()
        self.predict_loader()
        metrics: dict[str, float] = {}
        if self.dist.is_main:
            metrics = self.evaluator.evaluate()
            logger.info(f"Evaluation after epoch {self.epoch} ({time.perf_counter() - start:.1f} s):\n"
                        f"{self.evaluator.summary}\n{self.evaluator.format_per_class()}")
            if self._writer is not None:
                self._writer.write({"epoch": self.epoch, "iter": self.iter, **metrics}, self.epoch, "val")
                self._log_val_images()
            if self.plots:
                self._write_plots(Path(plot_dir) if plot_dir is not None else self.work_dir)
        return distributed.broadcast_object(metrics)

    def _gt(self) -> list[dict[str, Any]]:
        if self._ground_truth is None:
            self._ground_truth = ground_truth(self.val_loader.dataset)
        return self._ground_truth

    def _write_plots(self, out_dir: Path) -> None:
        from framework.evaluation.plots import write_plots  # matplotlib: imported only when plotting

        report = write_plots(self._gt(), self._detections, list(self.evaluator.class_names), out_dir)
        logger.info(f"Best F1 {report['best_f1']:.3f} at confidence {report['best_conf']:.3f}; plots in {out_dir}: "
                    + ", ".join(Path(p).name for p in report["paths"].values()))
        if self._writer is not None:
            for name, fig in report.get("figures", {}).items():
                self._writer.figure(f"val/{name}", fig, self.epoch)

    def _vis_samples(self) -> list[tuple[torch.Tensor, dict[str, Any]]]:
        """The first `vis_images` validation images at their original size (decoded once, for TensorBoard)."""
        if self._vis is None:
            dataset = self.val_loader.dataset
            n = min(self.vis_images, len(dataset)) if hasattr(dataset, "transforms") else 0
            self._vis = [_raw_sample(dataset, i) for i in range(n)]
        return self._vis

    def _log_val_images(self) -> None:
        """The first `vis_images` validation images with ground truth and predictions, to TensorBoard."""
        if self._writer is None:
            return
        from framework.visualization import draw_detections

        for i, (image, target) in enumerate(self._vis_samples()):
            dets = self._detections.get(int(target["image_id"]), _no_detections())
            tile = draw_detections(image.as_subclass(torch.Tensor), dets, target, list(self.evaluator.class_names))
            self._writer.image(f"val_images/{i}", tile, self.epoch)

    def _update_best(self, metrics: dict[str, float]) -> None:
        value = metrics.get(self.best_metric)
        if value is None:
            raise ConfigError(f"trainer.best_metric={self.best_metric} is not among the metrics: {', '.join(metrics)}")
        if math.isnan(value):
            logger.warning(f"{self.best_metric} is NaN (no class has ground truth in the validation set): "
                           "best.pth not updated")
        elif value > self.best["value"]:
            self.best = {"metric": self.best_metric, "value": float(value), "epoch": self.epoch}
            self.save("best.pth")
            logger.info(f"New best {self.best_metric} = {value:.4f}: saved best.pth")
        since = self.epoch - (self.best["epoch"] or 0)
        if self.patience is not None and since >= self.patience and self.epoch < self.max_epochs:
            self.stop_reason = (f"early stopping: no better {self.best_metric} for {since} epochs "
                                f"(trainer.patience={self.patience})")

    def _plot_results(self) -> None:
        path = self.work_dir / "metrics.jsonl"
        if not self.dist.is_main or not path.is_file():
            return
        from framework.visualization import plot_results

        try:
            logger.info(f"Curves: {plot_results(path, self.work_dir / 'results.png')}")
        except ValueError as exc:  # nothing logged yet (e.g. a run stopped before its first log line)
            logger.warning(f"results.png not written: {exc}")

    # ------------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights (the EMA's as `model` when enabled, so every consumer of
        a checkpoint gets the evaluated weights), optimizer, schedule position, scaler, counters, every rank's
        random generators, and the config. Collective under torchrun (the generators are gathered)."""
        ema = self.ema
        return {
            "model": self.eval_model.state_dict(),
            "train_model": self.model.state_dict() if ema is not None else None,
            "ema": {"updates": ema.updates} if ema is not None else None,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": self.epoch,
            "iter": self.iter,
            "batch_in_epoch": self.batch_in_epoch,
            "best": dict(self.best),
            "rng": distributed.gather_objects(rng_state()),
            "config": self.config,
            "meta": {"classes": list(self.evaluator.class_names), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "torch": str(torch.__version__), "world_size": self.dist.world_size},
        }

    def save(self, name: str) -> Path:
        """Write a checkpoint (rank 0; every rank must call it, see `state_dict`)."""
        path = self.work_dir / "checkpoints" / name
        state = self.state_dict()
        if self.dist.is_main:
            save_checkpoint(state, path)
        return path

    def resume(self, path: str | Path) -> bool:
        """Restore a run from its checkpoint; False when it has nothing left to train."""
        ckpt = load_checkpoint(path, map_location=self.device, purpose="resume")  # model, config, epoch, iter
        trained = ckpt["epoch"]
        saved_max = ckpt.get("config", {}).get("trainer", {}).get("max_epochs", trained)
        if trained >= self.max_epochs and not ckpt.get("batch_in_epoch"):
            logger.info(f"{path} has already trained {trained} epochs (trainer.max_epochs={self.max_epochs}): nothing "
                        f"to do. To train longer, raise it: trainer.max_epochs={trained + max(trained, 1)} resume=…")
            return False
        try:
            self.model.load_state_dict(ckpt["train_model"] if ckpt.get("train_model") is not None else ckpt["model"])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise CheckpointError(f"{path} does not fit this model ({' '.join(first[:2])[:300]}); resume a "
                                  "checkpoint of the same model config.") from None
        if self.ema is not None:
            self.ema.load_state_dict({"module": ckpt["model"], **(ckpt.get("ema") or {"updates": 0})})
        if ckpt.get("optimizer") is not None:
            try:
                self.optimizer.load_state_dict(ckpt["optimizer"])
            except ValueError as exc:  # other parameter groups: optimizer.paramwise or the model changed
                raise CheckpointError(
                    f"Cannot resume the optimizer of {path}: {exc}. Its parameter groups differ from this config's "
                    "(optimizer.paramwise, the optimizer or the model changed since it was written); resume with the "
                    "run's own config, or start a new run.") from None
        if ckpt.get("scheduler") is not None and self.scheduler is not None:
            load_scheduler_position(self.scheduler, ckpt["scheduler"])
        if ckpt.get("scaler") is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.iter, self.batch_in_epoch = trained, ckpt["iter"], ckpt.get("batch_in_epoch", 0)
        self.best = {**self.best, **ckpt.get("best", {})}
        rngs = ckpt.get("rng") or []
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank])
        else:
            logger.warning(f"{path} was written by {len(rngs)} processes, this run has {self.dist.world_size}: the "
                           "random generators start afresh (the data order and augmentations are still restored).")
        where = f"epoch {trained}" + (f" + {self.batch_in_epoch} batches" if self.batch_in_epoch else "")
        logger.info(f"Resumed from {path} at {where} (iteration {self.iter}).")
        if trained >= saved_max and self.max_epochs > saved_max:
            logger.info(f"Extending the finished {saved_max}-epoch run to {self.max_epochs} epochs.")
        if self.dist.is_main:
            self._carry_history(Path(path))
        return True

    def _carry_history(self, ckpt_path: Path) -> None:
        """Start this run's metrics.jsonl with the resumed run's records up to the checkpoint, so its curves and
        results.png cover the whole training."""
        old = ckpt_path.parent.parent / "metrics.jsonl"
        new = self.work_dir / "metrics.jsonl"
        if not old.is_file() or old.resolve() == new.resolve():
            return
        last_epoch = self.epoch + (1 if self.batch_in_epoch else 0)  # train/pipeline records count from 1
        kept = []
        for line in old.read_text().splitlines():
            record = json.loads(line) if line.strip() else None
            if record is not None and record.get("iter", 0) <= self.iter and record.get("epoch", 0) <= last_epoch:
                kept.append(line)
        new.write_text("".join(line + "\n" for line in kept))
        old_tb = ckpt_path.parent.parent / "tb"
        if old_tb.is_dir() and not (self.work_dir / "tb").exists():
            shutil.copytree(old_tb, self.work_dir / "tb")

    def write_eval_outputs(self, metrics: dict[str, float], out_dir: str | Path) -> None:
        if not self.dist.is_main:
            return
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(
            {"bbox": metrics, "per_class": self.evaluator.per_class}, indent=2, allow_nan=True))
        self.evaluator.write_results(out_dir / "results.bbox.json")
        logger.info(f"\n{format_metrics_table(metrics)}\nWrote {out_dir / 'metrics.json'} and "
                    f"{out_dir / 'results.bbox.json'}")


def _lr_scale(lr: float, auto_scale: dict[str, Any], batch_per_rank: int, world_size: int, accumulate: int) -> float:
    """The linear scaling rule's factor (1 when optimizer.auto_scale_lr.base_batch_size is null); logged."""
    global_batch = batch_per_rank * world_size * accumulate
    parts = f"{batch_per_rank} per process x {world_size} process(es) x {accumulate} accumulated"
    base = auto_scale.get("base_batch_size")
    if not base:
        logger.info(f"lr {lr:g} for a global batch of {global_batch} ({parts}); set "
                    f"optimizer.auto_scale_lr.base_batch_size to scale it with the batch size.")
        return 1.0
    effective = scaled_lr(lr, global_batch, int(base))
    logger.info(f"Linear LR scaling: global batch {global_batch} ({parts}) / base {base} -> lr {lr:g} x "
                f"{global_batch / base:g} = {effective:g}")
    return effective / lr


def _resume_path(cfg: DictConfig) -> Path | None:
    """`resume=true`: the newest last.pth of this experiment's other runs; `resume=<path>`: that file."""
    resume = cfg.get("resume", False)
    if resume in (False, None, "", "false", "False"):
        return None
    if resume is True or resume in ("true", "True"):
        experiment_dir = Path(cfg.work_dir).parent
        found = find_last_checkpoint(experiment_dir, exclude=cfg.work_dir)
        if found is None:
            raise ConfigError(f"resume=true but no run of this experiment has checkpoints/last.pth under "
                              f"{experiment_dir}; pass resume=<path/to/last.pth>, or check experiment_name.")
        return found
    path = Path(str(resume))
    if path.is_dir():
        path = path / "checkpoints" / "last.pth" if (path / "checkpoints").is_dir() else path / "last.pth"
    if not path.is_file():
        raise ConfigError(f"resume={resume}: no checkpoint at {path}.")
    return path


def _raw_sample(dataset: Any, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """`dataset[index]` without its transforms: the decoded image at its original size."""
    transforms = getattr(dataset, "transforms", None)
    dataset.transforms = None
    try:
        return dataset[index]
    finally:
        dataset.transforms = transforms


def _no_detections() -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
