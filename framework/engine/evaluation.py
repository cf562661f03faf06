"""One evaluation pass: the model over the validation loader (each rank its shard), detections gathered and
scored on rank 0, the numbers shared with every rank. Used by the evaluation callback during training and by
tools/test.py and tools/plot_run.py on a checkpoint."""
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
from framework.evaluation.build import ground_truth
from framework.evaluation.coco import format_metrics_table
from framework.evaluation.distributed import gather_predictions

logger = logging.getLogger("framework")


@dataclass
class EvalResult:
    """What one pass produced: the metrics, and the detections kept for plots and pictures (image id → dict)."""

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
        self._ground_truth: list[dict[str, Any]] | None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.evaluator.class_names)

    @property
    def primary_metric(self) -> str:
        return getattr(self.evaluator, "primary_metric", "bbox_mAP")

    @torch.no_grad()
    def run(self, model: nn.Module, epoch: int = 0, keep: set[int] | None = None) -> EvalResult:
        """Predict and score. `keep`: the image ids whose detections to return (None: all)."""
        start = time.perf_counter()
        model.eval()
        distributed.broadcast_buffers(model)  # rank 0's BatchNorm statistics, as saved in its checkpoint
        self.evaluator.reset()
        ids: list[int] = []
        dets: list[dict[str, torch.Tensor]] = []
        for batch in tqdm(self.loader, desc="Evaluating", disable=None if self.progress_bar else True,
                          dynamic_ncols=True, leave=False, file=sys.stderr):
            batch = batch.to(self.device, non_blocking=True)
            orig_sizes = [tuple(int(s) for s in t["orig_size"]) for t in batch.targets]
            out = model(batch.images.contiguous(memory_format=self.memory_format), image_sizes=batch.image_sizes,
                        orig_sizes=orig_sizes)
            ids += [int(t["image_id"]) for t in batch.targets]
            dets += [{k: v.cpu() for k, v in d.items()} for d in out]
        ids, dets = gather_predictions(ids, dets)  # under torchrun: every rank's, each image once
        metrics: dict[str, float] = {}
        if distributed.current().is_main:
            self.evaluator.process(ids, dets)
            metrics = self.evaluator.evaluate()
            logger.info(f"Evaluation after epoch {epoch} ({time.perf_counter() - start:.1f} s):\n"
                        f"{self.evaluator.summary}\n{self.evaluator.format_per_class()}")
        kept = {i: d for i, d in zip(ids, dets) if keep is None or i in keep}
        return EvalResult(distributed.broadcast_object(metrics), kept)

    def ground_truth(self) -> list[dict[str, Any]]:
        if self._ground_truth is None:
            self._ground_truth = ground_truth(self.loader.dataset)
        return self._ground_truth

    def write_plots(self, result: EvalResult, out_dir: str | Path) -> dict[str, Any]:
        """PR, F1 and confusion-matrix plots of `result` in `out_dir` (rank 0); returns the figures by name."""
        from framework.evaluation.plots import write_plots  # matplotlib: imported only when plotting

        out_dir = Path(out_dir)
        report = write_plots(self.ground_truth(), result.detections, self.class_names, out_dir)
        logger.info(f"Best F1 {report['best_f1']:.3f} at confidence {report['best_conf']:.3f}; plots in {out_dir}: "
                    + ", ".join(Path(p).name for p in report["paths"].values()))
        return report.get("figures", {})

    def write_outputs(self, metrics: dict[str, float], out_dir: str | Path) -> None:
        """metrics.json and results.bbox.json (COCO results format) in `out_dir` (rank 0), and the table."""
        if not distributed.current().is_main:
            return
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(
            {"bbox": metrics, "per_class": self.evaluator.per_class}, indent=2, allow_nan=True))
        self.evaluator.write_results(out_dir / "results.bbox.json")
        logger.info(f"\n{format_metrics_table(metrics)}\nWrote {out_dir / 'metrics.json'} and "
                    f"{out_dir / 'results.bbox.json'}")
