"""The training loop: epochs of SGD steps, evaluation every N epochs, checkpoints and logs.

Short on purpose (in the spirit of torchvision's detection references): everything that varies between models
lives in the model and its head; everything that varies between runs lives in the config.
"""
from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from framework.config.validation import ConfigError
from framework.data.loader import Batch, build_dataloader
from framework.data.pipeline_dataset import PipelineDataset
from framework.engine.checkpoint import save_checkpoint
from framework.engine.schedulers import build_scheduler
from framework.engine.logging import MetricsWriter, log_to_files
from framework.evaluation.build import build_evaluator, ground_truth
from framework.evaluation.coco import format_metrics_table
from framework.evaluation.distributed import gather_predictions

logger = logging.getLogger("framework")
# a short bar so that the losses, lr, images/s and the run's ETA fit on one terminal line
_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar:12}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but no CUDA device is available; use trainer.device=cpu or auto.")
    return device


def config_to_save(cfg: DictConfig) -> dict[str, Any]:
    """The config as composed, with interpolations kept (so `tools/test.py dataset.root=…` still flows into
    `dataset.val.root`), except the values that only Hydra's runtime can resolve (run name and folder)."""
    saved = OmegaConf.to_container(cfg, resolve=False)
    for key in ("experiment_name", "work_dir"):
        if key in cfg:
            saved[key] = cfg[key]
    return saved


class Runner:
    """Owns one run: model, data, optimization, evaluation and outputs in `work_dir`."""

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
    ) -> None:
        self.model, self.device = model, torch.device(device)
        if best_metric == "auto":  # the evaluator's main number: bbox_mAP (COCO), voc_mAP (VOC)
            best_metric = getattr(evaluator, "primary_metric", "bbox_mAP")
        self.train_loader, self.val_loader, self.evaluator = train_loader, val_loader, evaluator
        self.optimizer, self.scheduler = optimizer, scheduler
        self.work_dir = Path(work_dir)
        self.max_epochs, self.eval_interval, self.log_interval = max_epochs, max(1, eval_interval), max(1, log_interval)
        self.grad_clip_norm, self.best_metric, self.progress_bar = grad_clip_norm, best_metric, progress_bar
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.plots = plots
        self._detections: dict[int, dict[str, torch.Tensor]] = {}
        self._ground_truth: list[dict[str, Any]] | None = None
        self.config = config or {}
        self.epoch = 0  # epochs completed
        self.iter = 0  # optimizer steps completed
        self.best: dict[str, Any] = {"metric": best_metric, "value": float("-inf"), "epoch": None}
        self._writer: MetricsWriter | None = None

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg: DictConfig, training: bool = True) -> "Runner":
        from hydra.utils import instantiate

        seed_everything(cfg.seed, cfg.deterministic)
        device = resolve_device(cfg.trainer.device)
        data = cfg.dataset
        val_set = instantiate(data.val, transforms=instantiate(cfg.pipeline.val))
        model = instantiate(cfg.model)
        if model.num_classes != val_set.num_classes:
            raise ConfigError(
                f"The model predicts {model.num_classes} classes (model.head.num_classes, from dataset.num_classes) "
                f"but the dataset at {data.root} has {val_set.num_classes}: {', '.join(val_set.classes[:10])}"
                f"{'…' if val_set.num_classes > 10 else ''}. Set dataset.num_classes={val_set.num_classes}."
            )
        model.to(device, memory_format=torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format)
        val_loader = build_dataloader(val_set, data.val_batch_size, data.num_workers, shuffle=False,
                                      group_by_aspect_ratio=data.group_by_aspect_ratio)
        evaluator = build_evaluator(val_set, data.metric, cfg.evaluation.backend)
        kwargs: dict[str, Any] = {}
        if training:
            train_set = PipelineDataset(instantiate(data.train), instantiate(cfg.pipeline.train))
            if len(train_set) < data.batch_size:
                raise ConfigError(f"The training set has {len(train_set)} images, fewer than dataset.batch_size="
                                  f"{data.batch_size}; lower the batch size.")
            train_loader = build_dataloader(train_set, data.batch_size, data.num_workers, shuffle=True, seed=cfg.seed,
                                            drop_last=True, group_by_aspect_ratio=data.group_by_aspect_ratio)
            optimizer = instantiate(cfg.optimizer)([p for p in model.parameters() if p.requires_grad])
            scheduler = build_scheduler(instantiate(cfg.scheduler), optimizer, len(train_loader))
            kwargs = dict(train_loader=train_loader, optimizer=optimizer, scheduler=scheduler)
        t = cfg.trainer
        return cls(
            model, val_loader, evaluator, cfg.work_dir, device, max_epochs=t.max_epochs, eval_interval=t.eval_interval,
            log_interval=t.log_interval, grad_clip_norm=t.grad_clip_norm, best_metric=t.best_metric,
            progress_bar=t.progress_bar, channels_last=t.channels_last, plots=cfg.evaluation.plots,
            config=config_to_save(cfg), **kwargs,
        )

    # ------------------------------------------------------------------------------------------------ training
    def train(self) -> dict[str, Any]:
        if self.train_loader is None or self.optimizer is None:
            raise RuntimeError("This runner was built without training parts (from_config(training=False)).")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(self.config), resolve=True))
        self._writer = MetricsWriter(self.work_dir)
        n_params = sum(p.numel() for p in self.model.parameters())
        logger.info(f"Training {type(self.model.backbone).__name__}/{type(self.model.neck).__name__}/"
                    f"{type(self.model.head).__name__} ({n_params / 1e6:.2f} M parameters) on {self.device} for "
                    f"{self.max_epochs} epochs x {len(self.train_loader)} iterations; outputs in {self.work_dir}")
        metrics: dict[str, float] = {}
        try:
            while self.epoch < self.max_epochs:
                self._train_epoch()
                self.epoch += 1
                self.save("last.pth")
                if self.epoch % self.eval_interval == 0 or self.epoch == self.max_epochs:
                    metrics = self.evaluate()
                    self._update_best(metrics)
        finally:
            self._writer.close()
        logger.info(f"Done. Best {self.best_metric} = {self.best['value']:.4f} at epoch {self.best['epoch']}; "
                    f"checkpoints in {self.work_dir / 'checkpoints'}")
        return {"best": dict(self.best), "last": metrics}

    def _start_epoch_pipeline(self) -> None:
        """Tell the sampler (hence the workers) and the main-process pipeline which epoch starts, and log what the
        pipeline applies in it (close-mosaic, GridMask's ramped probability)."""
        loader = self.train_loader
        set_epoch = getattr(getattr(loader, "batch_sampler", None), "set_epoch", None)
        if set_epoch is not None:
            set_epoch(self.epoch, self.max_epochs)
        pipeline = getattr(getattr(loader, "dataset", None), "pipeline", None)
        if hasattr(pipeline, "set_epoch"):
            pipeline.set_epoch(self.epoch, self.max_epochs)
            summary = pipeline.epoch_summary()
            if summary:
                logger.info(f"Epoch {self.epoch + 1}/{self.max_epochs} pipeline: "
                            + ", ".join(f"{k}={v:.3g}" for k, v in summary.items()))
                if self._writer is not None:
                    self._writer.write({"epoch": self.epoch + 1, **summary}, self.epoch + 1, "pipeline")

    def _train_epoch(self) -> None:
        self.model.train()
        self._start_epoch_pipeline()
        loader = self.train_loader
        total_iters = self.max_epochs * len(loader)
        bar = tqdm(loader, desc=f"Epoch {self.epoch + 1}/{self.max_epochs}", disable=None if self.progress_bar else True,
                   dynamic_ncols=True, leave=True, file=sys.stderr, bar_format=_BAR_FORMAT)
        use_bar = not bar.disable
        window_start, window_images, window_iters = time.perf_counter(), 0, 0
        run_start, start_iter = time.perf_counter(), self.iter
        sums: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(bar):
            batch: Batch = batch.to(self.device, non_blocking=True)
            losses = self.model(batch.images.contiguous(memory_format=self.memory_format), batch.targets,
                                image_sizes=batch.image_sizes)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                values = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                ids = [t.get("source_ids", t.get("image_id")) for t in batch.targets]
                raise FloatingPointError(f"Non-finite loss at epoch {self.epoch + 1}, iteration {self.iter + 1} "
                                         f"({values}); images {ids}. Lower optimizer.lr or set trainer.grad_clip_norm.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip_norm:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.iter += 1
            window_images, window_iters = window_images + len(batch), window_iters + 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
            if self.iter % self.log_interval == 0 or i == len(loader) - 1:
                now = time.perf_counter()
                stats = {k: float(v) / window_iters for k, v in sums.items()}
                stats["loss"] = sum(stats.values())
                lr = self.optimizer.param_groups[0]["lr"]
                ips = window_images / max(now - window_start, 1e-9)
                eta = (now - run_start) / (self.iter - start_iter) * (total_iters - self.iter)
                self._log_iteration(bar, use_bar, stats, lr, ips, eta, i + 1, len(loader))
                self._writer.write({**stats, "lr": lr, "images_per_s": ips, "epoch": self.epoch + 1, "iter": self.iter},
                                   self.iter, "train")
                sums, window_start, window_images, window_iters = {}, now, 0, 0
        bar.close()

    def _log_iteration(self, bar: tqdm, use_bar: bool, stats: dict[str, float], lr: float, ips: float, eta: float,
                       it: int, n: int) -> None:
        eta_s = f"{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}"  # may exceed 24 h
        text = " ".join(f"{k}={v:.4f}" for k, v in stats.items())
        line = f"Epoch {self.epoch + 1}/{self.max_epochs} iter {it}/{n} {text} lr={lr:.3g} {ips:.1f} img/s eta {eta_s}"
        if use_bar:
            bar.set_postfix_str(f"{text} lr={lr:.3g} {ips:.1f} img/s run eta {eta_s}", refresh=False)
            log_to_files(line)
        else:
            logger.info(line)

    # ------------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict_loader(self) -> None:
        """Run the model over the validation loader and feed the evaluator."""
        self.model.eval()
        self.evaluator.reset()
        all_ids: list[int] = []
        all_dets: list[dict[str, torch.Tensor]] = []
        for batch in tqdm(self.val_loader, desc="Evaluating", disable=None if self.progress_bar else True,
                          dynamic_ncols=True, leave=False, file=sys.stderr):
            batch = batch.to(self.device, non_blocking=True)
            orig_sizes = [tuple(int(s) for s in t["orig_size"]) for t in batch.targets]
            dets = self.model(batch.images.contiguous(memory_format=self.memory_format), image_sizes=batch.image_sizes,
                              orig_sizes=orig_sizes)
            all_ids += [int(t["image_id"]) for t in batch.targets]
            all_dets += [{k: v.cpu() for k, v in d.items()} for d in dets]
        all_ids, all_dets = gather_predictions(all_ids, all_dets)  # under torchrun: every rank's, each image once
        self.evaluator.process(all_ids, all_dets)
        self._detections = dict(zip(all_ids, all_dets)) if self.plots else {}

    def evaluate(self, plot_dir: str | Path | None = None) -> dict[str, float]:
        """Predict on the validation set and score it; with plots on, also write the PR, F1 and confusion plots
        to `plot_dir` (default: the run folder) and TensorBoard."""
        start = time.perf_counter()
        self.predict_loader()
        metrics = self.evaluator.evaluate()
        logger.info(f"Evaluation after epoch {self.epoch} ({time.perf_counter() - start:.1f} s):\n"
                    f"{self.evaluator.summary}\n{self.evaluator.format_per_class()}")
        if self._writer is not None:
            self._writer.write({"epoch": self.epoch, "iter": self.iter, **metrics}, self.epoch, "val")
        if self.plots:
            self._write_plots(Path(plot_dir) if plot_dir is not None else self.work_dir)
        return metrics

    def _write_plots(self, out_dir: Path) -> None:
        from framework.evaluation.plots import write_plots  # matplotlib: imported only when plotting

        if self._ground_truth is None:
            self._ground_truth = ground_truth(self.val_loader.dataset)
        report = write_plots(self._ground_truth, self._detections, list(self.evaluator.class_names), out_dir)
        logger.info(f"Best F1 {report['best_f1']:.3f} at confidence {report['best_conf']:.3f}; plots in {out_dir}: "
                    + ", ".join(Path(p).name for p in report["paths"].values()))
        if self._writer is not None:
            for name, fig in report.get("figures", {}).items():
                self._writer.figure(f"val/{name}", fig, self.epoch)

    def _update_best(self, metrics: dict[str, float]) -> None:
        value = metrics.get(self.best_metric)
        if value is None:
            raise ConfigError(f"trainer.best_metric={self.best_metric} is not among the metrics: {', '.join(metrics)}")
        if math.isnan(value):
            logger.warning(f"{self.best_metric} is NaN (no class has ground truth in the validation set): "
                           "best.pth not updated")
            return
        if value > self.best["value"]:
            self.best = {"metric": self.best_metric, "value": float(value), "epoch": self.epoch}
            self.save("best.pth")
            logger.info(f"New best {self.best_metric} = {value:.4f}: saved best.pth")

    # ------------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "iter": self.iter,
            "best": dict(self.best),
            "config": self.config,
            "meta": {"classes": list(self.evaluator.class_names), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "torch": str(torch.__version__)},
        }

    def save(self, name: str) -> Path:
        return save_checkpoint(self.state_dict(), self.work_dir / "checkpoints" / name)

    def write_eval_outputs(self, metrics: dict[str, float], out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(
            {"bbox": metrics, "per_class": self.evaluator.per_class}, indent=2, allow_nan=True))
        self.evaluator.write_results(out_dir / "results.bbox.json")
        logger.info(f"\n{format_metrics_table(metrics)}\nWrote {out_dir / 'metrics.json'} and "
                    f"{out_dir / 'results.bbox.json'}")
