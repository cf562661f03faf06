"""COCO-style evaluation of boxes (``bbox``) and instance masks (``segm``), with detectron2's
``reset/process/evaluate`` API.

Every number reported here is pycocotools' own; this module only converts detections into
the official results format, maps contiguous labels back to dataset category ids, and keeps
the evaluators' printing out of the training log.

Metric keys name their task: ``bbox/mAP`` … ``bbox/AR_l`` and, for a mask model, ``segm/mAP`` …
``segm/AR_l`` (framework/evaluation/metric_names.py). Masks are evaluated when the detections carry
them (``masks``, bool [N, H, W] at the original image size, or ``rles``, already encoded) or when
``tasks`` asks; they are encoded to RLE on arrival, so the evaluator never holds a full mask. The
mask ground truth is the ``segmentation`` (polygons, RLE, crowd RLE) of the index's annotations.

Two backends compute the matching (``backend=``, the config's ``evaluation.backend``):

* ``"pycocotools"`` (default): pycocotools' ``COCOeval`` does everything.
* ``"faster_coco_eval"``: the optional ``faster-coco-eval`` package, made to give identical
  numbers bit for bit (framework/evaluation/coco_faster.py).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from framework.config.validation import ConfigError, did_you_mean
from framework.evaluation.coco_faster import (FASTER_INSTALL_HINT, EvaluationBackendNotInstalledError,
                                              accumulate_faster, faster_index, faster_results,
                                              import_faster_coco_eval)
from framework.evaluation.masks import encode_masks, rle_size
from framework.evaluation.metric_names import (COCO_METRIC_NAMES, COCO_SEGM_METRIC_NAMES, TASKS,
                                               coco_metric_names)

__all__ = [
    "BACKENDS",
    "COCO_METRIC_NAMES",
    "COCO_SEGM_METRIC_NAMES",
    "CocoEvaluator",
    "EvaluationBackendNotInstalledError",
    "FASTER_INSTALL_HINT",
    "format_metrics_table",
    "write_results_json",
]

logger = logging.getLogger("framework")

#: The ``backend`` values of ``CocoEvaluator`` (config: ``evaluation.backend``).
BACKENDS: tuple[str, ...] = ("pycocotools", "faster_coco_eval")


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
    """Copy one result dict; ``COCO.loadRes`` mutates what it is given (adds area, id, bbox, segmentation)."""
    out = dict(result)
    if "bbox" in out:
        out["bbox"] = list(result["bbox"])
    if "segmentation" in out:
        out["segmentation"] = dict(result["segmentation"])
    return out


def _mean_valid(values: np.ndarray) -> float:
    """Mean over entries > -1 (pycocotools' sentinel for "no ground truth"); NaN when none are valid."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else float("nan")


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


def write_results_json(results: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """A COCO results JSON (a list of image_id, category_id, bbox or segmentation, score), written atomically."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(list(results), f)
    os.replace(tmp, out)  # never leave a half-written file behind
    return out


def format_metrics_table(metrics: Mapping[str, float]) -> str:
    """Render metrics as a compact two-column table for logs: the 12 COCO box numbers, then the 12 mask numbers, in
    their usual order, then any other keys (e.g. VOC's ``voc_mAP``). Names missing from ``metrics`` are skipped so
    partial dicts still print.
    """
    known = COCO_METRIC_NAMES + COCO_SEGM_METRIC_NAMES
    names = [name for name in known if name in metrics]
    names += [name for name in metrics if name not in known]
    width = max([len("metric")] + [len(n) for n in names])
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
    lines += [f"{name:<{width}}  {_fmt(float(metrics[name]))}" for name in names]
    return "\n".join(lines)


def _index_over(coco_gt: COCO, annotations: list[dict[str, Any]]) -> COCO:
    """A pycocotools index of `coco_gt`'s images and categories with other annotation dicts."""
    index = COCO()
    index.dataset = {**coco_gt.dataset, "annotations": annotations}
    with _quiet():
        index.createIndex()
    return index


class CocoEvaluator:
    """Accumulates per-image detections and scores them as pycocotools' ``COCOeval`` does, for boxes and masks.

    Detections carry contiguous labels ``0..K-1`` (the framework contract); the dataset
    owns the mapping back to category ids, given here as ``label_to_cat_id``.

    ``backend`` picks the implementation: ``"pycocotools"`` (default) or ``"faster_coco_eval"``
    (optional package ``faster-coco-eval``, same numbers and per-class tables, faster). With
    either, ``coco_evals[task]`` after ``evaluate`` is a pycocotools ``COCOeval`` holding ``params``,
    ``eval`` (precision/recall/scores) and ``stats``; with faster_coco_eval it was not run by
    pycocotools (its ``evalImgs`` is empty) and only summarized by it. ``coco_eval`` is the first one.

    ``tasks``: what to score. ``None`` (default): boxes, and masks too when the processed detections carry them
    (a mask model), so a box model's evaluation is unchanged. ``("bbox", "segm")``: both, every detection must
    carry masks. ``("segm",)``: masks only (a results file without boxes); its primary metric is ``segm/mAP``.

    ``official``: scores the mask results another way too (Cityscapes' own instance AP, see
    framework/evaluation/cityscapes.py); run by ``evaluate_official()``, not by ``evaluate()``, as it is slow.
    """

    #: The metric the trainer keeps ``best.pth`` by (``trainer.best_metric=auto``): box AP, for a mask model too
    #: (as mmdetection and detectron2 do); ``trainer.best_metric=segm/mAP`` picks the mask AP.
    primary_metric: str = "bbox/mAP"

    def __init__(
        self,
        coco_gt: COCO | str,
        label_to_cat_id: Sequence[int],
        class_names: Sequence[str] | None = None,
        backend: str = "pycocotools",
        tasks: Sequence[str] | None = None,
        official: Callable[[Sequence[Mapping[str, Any]], Sequence[int]], dict[str, float]] | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(
                f"evaluation.backend={backend!r} is not a COCO evaluation backend; choose one of "
                f"{', '.join(BACKENDS)}.{did_you_mean(str(backend), BACKENDS)}"
            )
        if tasks is not None:
            tasks = tuple(dict.fromkeys(str(t) for t in tasks))
            unknown = [t for t in tasks if t not in TASKS]
            if unknown or not tasks:
                raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks}")
        self.tasks: tuple[str, ...] | None = tasks
        self.primary_metric = coco_metric_names("bbox" if tasks is None or "bbox" in tasks else "segm")[0]
        self.official = official
        self.backend: str = backend
        self._faster: tuple[Any, Any] | None = import_faster_coco_eval() if backend == "faster_coco_eval" else None
        self.coco_gt: COCO = _load_gt(coco_gt)
        self.label_to_cat_id: list[int] = [int(c) for c in label_to_cat_id]
        if not self.label_to_cat_id:
            raise ValueError("label_to_cat_id must not be empty")
        if len(set(self.label_to_cat_id)) != len(self.label_to_cat_id):
            raise ValueError(f"label_to_cat_id has repeated category ids: {self.label_to_cat_id}")
        gt_cat_ids = set(self.coco_gt.getCatIds())
        unknown_cats = [c for c in self.label_to_cat_id if c not in gt_cat_ids]
        if unknown_cats:
            raise ValueError(f"category ids {unknown_cats} are not in the ground truth (has {sorted(gt_cat_ids)})")
        if class_names is None:
            cats = self.coco_gt.loadCats(self.label_to_cat_id)
            class_names = [str(c.get("name", c["id"])) for c in cats]
        if len(class_names) != len(self.label_to_cat_id):
            raise ValueError(
                f"{len(class_names)} class names for {len(self.label_to_cat_id)} labels; they must match"
            )
        self.class_names: list[str] = [str(n) for n in class_names]
        self._gt_img_ids: set[int] = set(self.coco_gt.getImgIds())
        # task → (pycocotools index, faster_coco_eval index), or None: no mask ground truth
        self._ground_truths: dict[str, tuple[COCO, Any] | None] = {}
        self._no_segm_gt_warned = False

        self._results: list[dict[str, Any]] = []
        self._segm_results: list[dict[str, Any]] = []
        self._img_ids: list[int] = []
        self._seen: set[int] = set()
        self._with_masks: set[bool] = set()  # whether the processed detections carried masks: {True}, {False}
        self.summary: str = ""
        self.per_class: list[dict[str, Any]] = []
        self.per_class_by_task: dict[str, list[dict[str, Any]]] = {}
        self.coco_evals: dict[str, COCOeval] = {}
        self.coco_eval: COCOeval | None = None
        self.reset()

    # ------------------------------------------------------------------ API

    def reset(self) -> None:
        """Forget everything processed so far, so one evaluator serves every evaluation round."""
        self._results = []
        self._segm_results = []
        self._img_ids = []
        self._seen = set()
        self._with_masks = set()
        self.summary = ""
        self.per_class = []
        self.per_class_by_task = {}
        self.coco_evals = {}
        self.coco_eval = None

    def process(self, image_ids: Sequence[int], detections: Sequence[Mapping[str, Any]]) -> None:
        """Convert one batch of detections (XYXY, original pixels, contiguous labels; optional ``masks`` bool
        [N, H, W] at the original size, or ``rles``) to COCO results.

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
            rles = self._rles(img_id, det, len(labels))
            self._seen.add(img_id)
            self._img_ids.append(img_id)
            cat_ids = [self.label_to_cat_id[label] for label in labels.tolist()]
            if self.tasks is None or "bbox" in self.tasks:
                # float64 keeps w = x2 - x1 as exact as the incoming boxes allow.
                xywh = boxes.clone()
                xywh[:, 2:] -= xywh[:, :2]
                for bbox, score, cat_id in zip(xywh.tolist(), scores.tolist(), cat_ids):
                    self._results.append({"image_id": img_id, "category_id": cat_id,
                                          "bbox": [float(v) for v in bbox], "score": float(score)})
            if rles is not None:
                for rle, score, cat_id in zip(rles, scores.tolist(), cat_ids):
                    self._segm_results.append({"image_id": img_id, "category_id": cat_id,
                                               "segmentation": rle, "score": float(score)})

    def evaluate(self) -> dict[str, float]:
        """Evaluate the processed images with the backend and return the 12 stats of each task by name
        (``bbox/mAP`` …, then ``segm/mAP`` … when masks are scored).

        If nothing was processed, every ground-truth image is evaluated with no detections
        (mAP 0), so an untrained model reads as 0 rather than pycocotools' -1 sentinel.
        Values of -1 can still appear where pycocotools gives them (e.g. no small objects).
        """
        img_ids = sorted(self._img_ids) if self._img_ids else sorted(self._gt_img_ids)
        # Restrict to the categories the model can predict (same as all of them when the
        # mapping covers the annotation file), like mmdetection does.
        cat_ids = sorted(self.label_to_cat_id)
        metrics: dict[str, float] = {}
        summaries: list[tuple[str, str]] = []
        self.coco_evals, self.per_class_by_task = {}, {}
        for task in self.evaluated_tasks():
            ground_truth = self._ground_truth(task)
            if ground_truth is None:
                continue
            with _quiet():
                coco_eval = self._match(task, ground_truth, img_ids, cat_ids)
            summary = io.StringIO()
            with contextlib.redirect_stdout(summary):
                coco_eval.summarize()
            summaries.append((task, summary.getvalue().rstrip("\n")))
            self.coco_evals[task] = coco_eval
            self.per_class_by_task[task] = self._per_class(coco_eval)
            metrics.update(zip(coco_metric_names(task), (float(v) for v in coco_eval.stats)))
        self.summary = (summaries[0][1] if len(summaries) == 1
                        else "\n".join(f"IoU type {task}:\n{text}" for task, text in summaries))
        self.coco_eval = next(iter(self.coco_evals.values()), None)
        self.per_class = next(iter(self.per_class_by_task.values()), [])
        return metrics

    def evaluate_official(self) -> dict[str, float]:
        """The ``official`` scorer's numbers on the mask results ({} without one, or without masks); call after
        ``evaluate``. Slow on a full validation set: tools/test.py runs it, training evaluations do not."""
        if self.official is None or "segm" not in self.coco_evals:
            return {}
        return self.official(self._segm_results, sorted(self._img_ids))

    def evaluated_tasks(self) -> tuple[str, ...]:
        """The tasks ``evaluate`` scores, given what was processed."""
        if self.tasks is not None:
            return self.tasks
        return ("bbox", "segm") if True in self._with_masks else ("bbox",)

    @property
    def results(self) -> list[dict[str, Any]]:
        """The COCO box result dicts so far (copies: ``COCO.loadRes`` mutates what it gets)."""
        return [_copy_result(r) for r in self._results]

    @property
    def segm_results(self) -> list[dict[str, Any]]:
        """The COCO mask result dicts so far (``segmentation``: compressed RLE, ``counts`` as str), copies."""
        return [_copy_result(r) for r in self._segm_results]

    @property
    def image_ids(self) -> list[int]:
        """Image ids processed so far, in processing order."""
        return list(self._img_ids)

    def write_results(self, path: str | os.PathLike[str], task: str = "bbox") -> Path:
        """Write the results of `task` as the official COCO results JSON (a list), creating parent folders:
        ``bbox`` as results.bbox.json holds them, ``segm`` as results.segm.json (RLE, ``counts`` as str)."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        return write_results_json(self._segm_results if task == "segm" else self._results, path)

    def format_per_class(self) -> str:
        """Aligned per-class AP/AP50/AP75 table (call after ``evaluate``), one column group per scored task."""
        tasks = list(self.per_class_by_task)
        if not tasks:
            return "(no per-class results: call evaluate() first)"
        rows = self.per_class_by_task[tasks[0]]
        width = max([len("class")] + [len(str(r["class"])) for r in rows])
        group = 6 * 3 + 2 * 2  # three 6-wide columns, two spaces between
        lines = []
        if len(tasks) > 1:
            lines.append(f"{'':<{width}}" + "".join(f"  {task:^{group}}" for task in tasks))
        lines.append(f"{'class':<{width}}" + f"  {'AP':>6}  {'AP50':>6}  {'AP75':>6}" * len(tasks))
        lines.append("-" * (width + (group + 2) * len(tasks)))
        for i, row in enumerate(rows):
            cells = "".join(f"  {_fmt(r['AP']):>6}  {_fmt(r['AP50']):>6}  {_fmt(r['AP75']):>6}"
                            for r in (self.per_class_by_task[t][i] for t in tasks))
            lines.append(f"{row['class']:<{width}}{cells}")
        return "\n".join(lines)

    # ------------------------------------------------------------ internals

    def _rles(self, img_id: int, det: Mapping[str, Any], n: int) -> list[dict[str, Any]] | None:
        """The detections' masks as RLE at the image's size, or None when masks are not scored."""
        if "rles" in det:
            rles = [dict(r) for r in det["rles"]]
            rles = [{**r, "counts": r["counts"].decode("ascii")} if isinstance(r["counts"], bytes) else r
                    for r in rles]
        elif det.get("masks") is not None:
            rles = encode_masks(det["masks"])
        else:
            rles = None
        if self.tasks is None:
            self._with_masks.add(rles is not None)
            if len(self._with_masks) > 1:
                raise ValueError(f"image {img_id}: some detections carry masks and some do not; a mask model "
                                 "gives `masks` for every image (empty when it detects nothing)")
        elif "segm" not in self.tasks:
            return None
        elif rles is None:
            raise ValueError(f"image {img_id}: the detections carry no masks (`masks` or `rles`), which segm "
                             "evaluation (tasks includes 'segm') needs")
        if rles is None:
            return None
        if len(rles) != n:
            raise ValueError(f"image {img_id}: {len(rles)} masks for {n} detections")
        info = self.coco_gt.imgs[img_id]
        expected = (int(info["height"]), int(info["width"])) if "height" in info else None
        for rle in rles:
            if expected is not None and rle_size(rle) != expected:
                raise ValueError(f"image {img_id}: a mask is {rle_size(rle)[0]}x{rle_size(rle)[1]} (height x "
                                 f"width) but the image is {expected[0]}x{expected[1]}: masks must be at the "
                                 "original image size (the model's orig_sizes)")
        return rles

    def _ground_truth(self, task: str) -> tuple[COCO, Any] | None:
        """(pycocotools index, faster_coco_eval index or None) of `task`'s ground truth; None when masks are
        scored because the detections have them but the annotations have no segmentation (a warning, once)."""
        if task in self._ground_truths:
            return self._ground_truths[task]
        if task == "bbox":
            gt = self.coco_gt
        else:
            gt = self._segm_index()
            if gt is None:
                self._ground_truths[task] = None
                return None
        faster = faster_index(self._faster[0], gt.dataset) if self._faster is not None else None
        self._ground_truths[task] = (gt, faster)
        return self._ground_truths[task]

    def _segm_index(self) -> COCO | None:
        """The mask ground truth: copies of the annotations of the evaluated categories, their segmentations as
        compressed RLE. Copies, because pycocotools' segm evaluation overwrites each annotation's segmentation
        with its RLE, which would change the dataset's own index; converted once here, not at every evaluation."""
        cat_ids = set(self.label_to_cat_id)
        anns = [a for a in self.coco_gt.dataset.get("annotations", []) if int(a["category_id"]) in cat_ids]
        missing = [a for a in anns if not a.get("segmentation")]
        if missing and len(missing) == len(anns) and self.tasks is None:
            if not self._no_segm_gt_warned:
                logger.warning("The detections carry masks but the ground truth has no 'segmentation': segm AP "
                               "is not computed (build the validation set with masks: dataset.val.with_masks=true)")
                self._no_segm_gt_warned = True
            return None
        if missing:
            raise ValueError(f"annotation id {missing[0].get('id')} (image {missing[0].get('image_id')}) has no "
                             f"'segmentation' ({len(missing)} of {len(anns)} lack one): segm AP needs the mask "
                             "of every ground-truth object (build the dataset with_masks=True)")
        copies = []
        for ann in anns:
            copy_ = dict(ann)
            copy_["segmentation"] = self.coco_gt.annToRLE(ann)  # polygons, uncompressed (crowd) or compressed RLE
            copies.append(copy_)
        return _index_over(self.coco_gt, copies)

    def _match(self, task: str, ground_truth: tuple[COCO, Any], img_ids: list[int], cat_ids: list[int]) -> COCOeval:
        gt, faster_gt = ground_truth
        results = self._segm_results if task == "segm" else self._results
        if self._faster is not None:
            coco_dt = faster_results(self._faster[0], gt.dataset, results, task)
            return accumulate_faster(self._faster[1], faster_gt, coco_dt, gt, task, img_ids, cat_ids)
        coco_eval = COCOeval(gt, self._results_coco(gt, results), task)
        coco_eval.params.imgIds = img_ids
        coco_eval.params.catIds = cat_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        return coco_eval

    @staticmethod
    def _results_coco(gt: COCO, results: list[dict[str, Any]]) -> COCO:
        """Results as a ``COCO`` object; ``loadRes([])`` crashes, so the empty case is built by hand."""
        if results:
            return gt.loadRes([_copy_result(r) for r in results])
        empty = COCO()
        empty.dataset = {
            "info": copy.deepcopy(gt.dataset.get("info", {})),
            "images": list(gt.dataset.get("images", [])),
            "categories": copy.deepcopy(gt.dataset.get("categories", [])),
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
