"""One evaluation pass: the model over the validation loader (each rank its shard), detections gathered and
scored on rank 0, the numbers shared with every rank. Used by the evaluation callback during training and by
tools/test.py and tools/plot_run.py on a checkpoint.

A mask model's masks are encoded to RLE as each batch leaves the model (framework/evaluation/masks.py), so the
pass, the gathering across ranks and the kept detections never hold full-size masks: detections carry `rles`
instead of `masks`."""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from framework.engine import distributed
from framework.evaluation.build import ground_truth, has_masks
from framework.evaluation.coco import format_metrics_table
from framework.evaluation.distributed import gather_predictions
from framework.evaluation.masks import compact_detection
from framework.evaluation.metric_names import group_by_task

logger = logging.getLogger("framework")


@dataclass
class EvalResult:
    """What one pass produced: the metrics, and the detections kept for plots and pictures (image id → dict with
    boxes, scores, labels and, for a mask model, `rles`; framework.evaluation.masks.decode_rles draws them)."""

    metrics: dict[str, float]
    detections: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # matplotlib figures the plots callback made, for TensorBoard


class Evaluation:
    """The validation loader and the evaluator (reset/process/evaluate, as in detectron2), and how to run them."""

    def __init__(self, loader: Any, evaluator: Any, device: torch.device | str = "cpu", channels_last: bool = False,
                 progress_bar: bool = True) -> None:
        self.loader, self.evaluator, self.device = loader, evaluator, torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.progress_bar = progress_bar and distributed.current().is_main
        self._ground_truth: dict[bool, list[dict[str, Any]]] = {}  # with masks? → per-image ground truth

    @property
    def class_names(self) -> list[str]:
        return list(self.evaluator.class_names)

    @property
    def primary_metric(self) -> str:
        return getattr(self.evaluator, "primary_metric", "bbox/mAP")

    @torch.no_grad()
    def run(self, model: nn.Module, epoch: int = 0, keep: set[int] | None = None,
            official: bool = False) -> EvalResult:
        """Predict and score. `keep`: the image ids whose detections to return (None: all). `official`: also the
        evaluator's slower official scoring where it has one (Cityscapes' instance AP; tools/test.py)."""
        start = time.perf_counter()
        model.eval()
        distributed.broadcast_buffers(model)  # rank 0's BatchNorm statistics, as saved in its checkpoint
        self.evaluator.reset()
        ids: list[int] = []
        dets: list[dict[str, Any]] = []
        for batch in tqdm(self.loader, desc="Evaluating", disable=None if self.progress_bar else True,
                          dynamic_ncols=True, leave=False, file=sys.stderr):
            batch = batch.to(self.device, non_blocking=True)
            orig_sizes = [tuple(int(s) for s in t["orig_size"]) for t in batch.targets]
            out = model(batch.images.contiguous(memory_format=self.memory_format), image_sizes=batch.image_sizes,
                        orig_sizes=orig_sizes)
            ids += [int(t["image_id"]) for t in batch.targets]
            dets += [compact_detection(d) for d in out]  # on the CPU, masks as RLE
        ids, dets = gather_predictions(ids, dets)  # under torchrun: every rank's, each image once
        metrics: dict[str, float] = {}
        if distributed.current().is_main:
            self.evaluator.process(ids, dets)
            metrics = self.evaluator.evaluate()
            if official and hasattr(self.evaluator, "evaluate_official"):
                metrics.update(self.evaluator.evaluate_official())
            logger.info(f"Evaluation after epoch {epoch} ({time.perf_counter() - start:.1f} s):\n"
                        f"{self.evaluator.summary}\n{self.evaluator.format_per_class()}")
        kept = {i: d for i, d in zip(ids, dets) if keep is None or i in keep}
        return EvalResult(distributed.broadcast_object(metrics), kept)

    def ground_truth(self, masks: bool = False) -> list[dict[str, Any]]:
        """Per-image ground truth for the plots (framework.evaluation.build.ground_truth), read once."""
        if masks not in self._ground_truth:
            self._ground_truth[masks] = ground_truth(self.loader.dataset, masks=masks)
        return self._ground_truth[masks]

    def write_plots(self, result: EvalResult, out_dir: str | Path) -> dict[str, Any]:
        """PR, F1 and confusion-matrix plots of `result` in `out_dir` (rank 0), of the masks too (segm_*.png) when
        the detections carry them; returns the figures by name."""
        from framework.evaluation.plots import write_plots  # matplotlib: imported only when plotting

        out_dir = Path(out_dir)
        figures: dict[str, Any] = {}
        with_masks = any("rles" in d for d in result.detections.values())
        for task in ("bbox", "segm") if with_masks and has_masks(self.loader.dataset) else ("bbox",):
            report = write_plots(self.ground_truth(masks=task == "segm"), result.detections, self.class_names,
                                 out_dir, task=task)
            logger.info(f"{task}: best F1 {report['best_f1']:.3f} at confidence {report['best_conf']:.3f}; plots in "
                        f"{out_dir}: " + ", ".join(Path(p).name for p in report["paths"].values()))
            figures.update(report.get("figures", {}))
        return figures

    def write_outputs(self, metrics: dict[str, float], out_dir: str | Path) -> None:
        """metrics.json, results.bbox.json and, for a mask model, results.segm.json (COCO results format, masks as
        RLE) in `out_dir` (rank 0), and the table.

        metrics.json groups the numbers by task, keys whole: `{"bbox": {"bbox/mAP": …}, "segm": {"segm/mAP": …},
        "per_class": {"bbox": [rows], "segm": [rows]}}` (VOC: `{"bbox": {"voc_mAP": …}, …}`)."""
        if not distributed.current().is_main:
            return
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        per_class = getattr(self.evaluator, "per_class_by_task", None) or {"bbox": self.evaluator.per_class}
        (out_dir / "metrics.json").write_text(json.dumps(
            {**group_by_task(metrics), "per_class": per_class}, indent=2, allow_nan=True))
        written = [out_dir / "metrics.json", self.evaluator.write_results(out_dir / "results.bbox.json")]
        if "segm" in per_class:
            written.append(self.evaluator.write_results(out_dir / "results.segm.json", task="segm"))
        logger.info(f"\n{format_metrics_table(metrics)}\nWrote " + ", ".join(str(p) for p in written))
