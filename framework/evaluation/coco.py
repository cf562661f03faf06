"""COCO-style bounding-box evaluation, with detectron2's ``reset/process/evaluate`` API.

Every number reported here is computed by pycocotools' ``COCOeval``; this module only
converts detections into the official results format, maps contiguous labels back to
dataset category ids, and keeps pycocotools' printing out of the training log.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["COCO_METRIC_NAMES", "CocoEvaluator", "format_metrics_table"]

#: Names of ``COCOeval.stats`` in the order pycocotools fills them.
COCO_METRIC_NAMES: tuple[str, ...] = (
    "bbox_mAP",
    "bbox_mAP_50",
    "bbox_mAP_75",
    "bbox_mAP_s",
    "bbox_mAP_m",
    "bbox_mAP_l",
    "bbox_AR_1",
    "bbox_AR_10",
    "bbox_AR_100",
    "bbox_AR_s",
    "bbox_AR_m",
    "bbox_AR_l",
)


def _quiet() -> contextlib.AbstractContextManager[Any]:
    """Swallow pycocotools' progress prints so they never reach the log."""
    return contextlib.redirect_stdout(io.StringIO())


def _load_gt(coco_gt: COCO | str | os.PathLike[str]) -> COCO:
    """Accept a ready ``COCO`` object or an annotation-file path (loaded without printing)."""
    if isinstance(coco_gt, COCO):
        return coco_gt
    if isinstance(coco_gt, (str, os.PathLike)):
        with _quiet():
            return COCO(os.fspath(coco_gt))
    raise TypeError(f"coco_gt must be a pycocotools COCO object or a path, got {type(coco_gt).__name__}")


def _copy_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """Copy one result dict; ``COCO.loadRes`` mutates what it is given (adds area, id, segmentation)."""
    out = dict(result)
    out["bbox"] = list(result["bbox"])
    return out


def _mean_valid(values: np.ndarray) -> float:
    """Mean over entries > -1 (pycocotools' sentinel for "no ground truth"); NaN when none are valid."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else float("nan")


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


def format_metrics_table(metrics: Mapping[str, float]) -> str:
    """Render the 12 COCO numbers as a compact two-column table for logs.

    Names missing from ``metrics`` are skipped so partial dicts still print.
    """
    names = [name for name in COCO_METRIC_NAMES if name in metrics]
    width = max([len("metric")] + [len(n) for n in names])
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
    lines += [f"{name:<{width}}  {_fmt(float(metrics[name]))}" for name in names]
    return "\n".join(lines)


class CocoEvaluator:
    """Accumulates per-image detections and scores them with pycocotools' ``COCOeval`` (bbox).

    Detections carry contiguous labels ``0..K-1`` (the framework contract); the dataset
    owns the mapping back to category ids, given here as ``label_to_cat_id``.
    """

    def __init__(
        self,
        coco_gt: COCO | str,
        label_to_cat_id: Sequence[int],
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.coco_gt: COCO = _load_gt(coco_gt)
        self.label_to_cat_id: list[int] = [int(c) for c in label_to_cat_id]
        if not self.label_to_cat_id:
            raise ValueError("label_to_cat_id must not be empty")
        if len(set(self.label_to_cat_id)) != len(self.label_to_cat_id):
            raise ValueError(f"label_to_cat_id has repeated category ids: {self.label_to_cat_id}")
        gt_cat_ids = set(self.coco_gt.getCatIds())
        unknown = [c for c in self.label_to_cat_id if c not in gt_cat_ids]
        if unknown:
            raise ValueError(f"category ids {unknown} are not in the ground truth (has {sorted(gt_cat_ids)})")
        if class_names is None:
            cats = self.coco_gt.loadCats(self.label_to_cat_id)
            class_names = [str(c.get("name", c["id"])) for c in cats]
        if len(class_names) != len(self.label_to_cat_id):
            raise ValueError(
                f"{len(class_names)} class names for {len(self.label_to_cat_id)} labels; they must match"
            )
        self.class_names: list[str] = [str(n) for n in class_names]
        self._gt_img_ids: set[int] = set(self.coco_gt.getImgIds())

        self._results: list[dict[str, Any]] = []
        self._img_ids: list[int] = []
        self._seen: set[int] = set()
        self.summary: str = ""
        self.per_class: list[dict[str, Any]] = []
        self.coco_eval: COCOeval | None = None
        self.reset()

    # ------------------------------------------------------------------ API

    def reset(self) -> None:
        """Forget everything processed so far, so one evaluator serves every evaluation round."""
        self._results = []
        self._img_ids = []
        self._seen = set()
        self.summary = ""
        self.per_class = []
        self.coco_eval = None

    def process(self, image_ids: Sequence[int], detections: Sequence[Mapping[str, torch.Tensor]]) -> None:
        """Convert one batch of detections (XYXY, original pixels, contiguous labels) to COCO results.

        Images with no detections still count: they are recorded as evaluated, so their
        ground truth becomes misses rather than silently leaving the evaluation.
        """
        if len(image_ids) != len(detections):
            raise ValueError(f"{len(image_ids)} image ids but {len(detections)} detection dicts")
        num_labels = len(self.label_to_cat_id)
        for raw_id, det in zip(image_ids, detections):
            img_id = int(raw_id)
            if img_id not in self._gt_img_ids:
                raise ValueError(f"image id {img_id} is not in the ground-truth annotations")
            if img_id in self._seen:
                # DistributedSampler pads the last batch by repeating images; counting them
                # twice would duplicate detections, so the first occurrence wins.
                warnings.warn(f"image id {img_id} processed twice; ignoring the repeat", stacklevel=2)
                continue
            self._seen.add(img_id)
            self._img_ids.append(img_id)

            boxes = torch.as_tensor(det["boxes"]).detach().cpu().to(torch.float64).reshape(-1, 4)
            scores = torch.as_tensor(det["scores"]).detach().cpu().to(torch.float64).reshape(-1)
            labels = torch.as_tensor(det["labels"]).detach().cpu().to(torch.int64).reshape(-1)
            if not (len(boxes) == len(scores) == len(labels)):
                raise ValueError(
                    f"image {img_id}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
                )
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
                raise ValueError(
                    f"image {img_id}: labels must be in [0, {num_labels}), got "
                    f"[{int(labels.min())}, {int(labels.max())}]"
                )
            # float64 keeps w = x2 - x1 as exact as the incoming boxes allow.
            xywh = boxes.clone()
            xywh[:, 2:] -= xywh[:, :2]
            for bbox, score, label in zip(xywh.tolist(), scores.tolist(), labels.tolist()):
                self._results.append(
                    {
                        "image_id": img_id,
                        "category_id": self.label_to_cat_id[label],
                        "bbox": [float(v) for v in bbox],
                        "score": float(score),
                    }
                )

    def evaluate(self) -> dict[str, float]:
        """Run ``COCOeval`` on the processed images and return the 12 stats by name.

        If nothing was processed, every ground-truth image is evaluated with no detections
        (mAP 0), so an untrained model reads as 0 rather than pycocotools' -1 sentinel.
        Values of -1 can still appear where pycocotools gives them (e.g. no small objects).
        """
        img_ids = sorted(self._img_ids) if self._img_ids else sorted(self._gt_img_ids)
        with _quiet():
            coco_dt = self._results_coco()
            coco_eval = COCOeval(self.coco_gt, coco_dt, "bbox")
            coco_eval.params.imgIds = img_ids
            # Restrict to the categories the model can predict (same as all of them when the
            # mapping covers the annotation file), like mmdetection does.
            coco_eval.params.catIds = sorted(self.label_to_cat_id)
            coco_eval.evaluate()
            coco_eval.accumulate()
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            coco_eval.summarize()
        self.summary = summary.getvalue().rstrip("\n")
        self.coco_eval = coco_eval
        self.per_class = self._per_class(coco_eval)
        return {name: float(value) for name, value in zip(COCO_METRIC_NAMES, coco_eval.stats)}

    @property
    def results(self) -> list[dict[str, Any]]:
        """The COCO result dicts so far (copies: ``COCO.loadRes`` mutates what it gets)."""
        return [_copy_result(r) for r in self._results]

    @property
    def image_ids(self) -> list[int]:
        """Image ids processed so far, in processing order."""
        return list(self._img_ids)

    def write_results(self, path: str | os.PathLike[str]) -> Path:
        """Write the results as the official COCO results JSON (a list), creating parent folders."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self._results, f)
        os.replace(tmp, out)  # never leave a half-written file behind
        return out

    def format_per_class(self) -> str:
        """Aligned per-class AP/AP50/AP75 table (call after ``evaluate``)."""
        if not self.per_class:
            return "(no per-class results: call evaluate() first)"
        width = max([len("class")] + [len(str(r["class"])) for r in self.per_class])
        lines = [f"{'class':<{width}}  {'AP':>6}  {'AP50':>6}  {'AP75':>6}", "-" * (width + 24)]
        for row in self.per_class:
            lines.append(
                f"{row['class']:<{width}}  {_fmt(row['AP']):>6}  {_fmt(row['AP50']):>6}  {_fmt(row['AP75']):>6}"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------ internals

    def _results_coco(self) -> COCO:
        """Results as a ``COCO`` object; ``loadRes([])`` crashes, so the empty case is built by hand."""
        if self._results:
            return self.coco_gt.loadRes([_copy_result(r) for r in self._results])
        empty = COCO()
        empty.dataset = {
            "info": copy.deepcopy(self.coco_gt.dataset.get("info", {})),
            "images": list(self.coco_gt.dataset.get("images", [])),
            "categories": copy.deepcopy(self.coco_gt.dataset.get("categories", [])),
            "annotations": [],
        }
        empty.createIndex()
        return empty

    def _per_class(self, coco_eval: COCOeval) -> list[dict[str, Any]]:
        """AP, AP50, AP75 per class from ``eval['precision']`` (area 'all', largest maxDets).

        Averages only entries > -1, as detectron2/mmdetection do; NaN when a class has no
        ground truth in the evaluated images.
        """
        params = coco_eval.params
        precision = coco_eval.eval["precision"]  # [T, R, K, A, M]
        area = params.areaRngLbl.index("all")
        t50 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.5))[0])
        t75 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.75))[0])
        rows = []
        for name, cat_id in zip(self.class_names, self.label_to_cat_id):
            k = list(params.catIds).index(cat_id)
            p = precision[:, :, k, area, -1]
            rows.append(
                {
                    "class": name,
                    "AP": _mean_valid(p),
                    "AP50": _mean_valid(p[t50]),
                    "AP75": _mean_valid(p[t75]),
                }
            )
        return rows
