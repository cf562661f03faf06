"""COCO-style bounding-box evaluation, with detectron2's ``reset/process/evaluate`` API.

Every number reported here is pycocotools' own; this module only converts detections into
the official results format, maps contiguous labels back to dataset category ids, and keeps
the evaluators' printing out of the training log.

Two backends compute the matching (``backend=``, the config's ``evaluation.backend``):

* ``"pycocotools"`` (default): pycocotools' ``COCOeval`` does everything.
* ``"faster_coco_eval"``: the optional ``faster-coco-eval`` package (C++ matching and
  accumulation, several times faster on large validation sets). Its precision differs from
  pycocotools' in one place: pycocotools divides by ``tp + fp + np.spacing(1)``, faster-coco-eval
  by ``tp + fp``, which gives 1.0 instead of ``1/(1+eps)`` (0.9999999999999998) where a curve's
  precision comes from its first valid detection alone. This module finds those entries (see
  ``_pycocotools_precision``) and restores pycocotools' value, and both backends then run
  pycocotools' own ``summarize``, so the 12 numbers and the per-class table are identical, bit
  for bit (tests/evaluation/test_coco_backends.py).
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

from framework.config.validation import ConfigError, did_you_mean

__all__ = [
    "BACKENDS",
    "COCO_METRIC_NAMES",
    "CocoEvaluator",
    "EvaluationBackendNotInstalledError",
    "format_metrics_table",
]

#: The ``backend`` values of ``CocoEvaluator`` (config: ``evaluation.backend``).
BACKENDS: tuple[str, ...] = ("pycocotools", "faster_coco_eval")

FASTER_INSTALL_HINT = 'pip install faster-coco-eval (or pip install "framework[faster]")'

#: pycocotools' precision of a curve point with one valid detection, a true positive: 1/(1+eps).
_ONE_TP_PRECISION: float = 1.0 / (1.0 + np.spacing(1))

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


class EvaluationBackendNotInstalledError(ConfigError, ImportError):
    """The chosen evaluation backend's package is not installed.

    A ``ConfigError`` (the command line prints it without a traceback) and an ``ImportError``.
    """


def _import_faster_coco_eval() -> tuple[Any, Any]:
    """``faster_coco_eval.COCO`` and ``faster_coco_eval.COCOeval_faster``, or a clear error."""
    try:
        from faster_coco_eval import COCO as FasterCOCO
        from faster_coco_eval import COCOeval_faster
    except ImportError as exc:
        raise EvaluationBackendNotInstalledError(
            f"evaluation.backend=faster_coco_eval needs the optional package faster-coco-eval, which is not "
            f"installed ({exc}): {FASTER_INSTALL_HINT}. Or use evaluation.backend=pycocotools, which gives the "
            "same numbers and needs nothing extra."
        ) from exc
    return FasterCOCO, COCOeval_faster


def _discard(*args: Any, **kwargs: Any) -> None:
    """A ``print_function`` for faster_coco_eval that prints nothing."""


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


def write_results_json(results: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """A COCO results JSON (a list of image_id, category_id, bbox, score), written atomically."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(list(results), f)
    os.replace(tmp, out)  # never leave a half-written file behind
    return out


def format_metrics_table(metrics: Mapping[str, float]) -> str:
    """Render metrics as a compact two-column table for logs: the 12 COCO numbers in their usual order, then any
    other keys (e.g. VOC's ``voc_mAP``). Names missing from ``metrics`` are skipped so partial dicts still print.
    """
    names = [name for name in COCO_METRIC_NAMES if name in metrics]
    names += [name for name in metrics if name not in COCO_METRIC_NAMES]
    width = max([len("metric")] + [len(n) for n in names])
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
    lines += [f"{name:<{width}}  {_fmt(float(metrics[name]))}" for name in names]
    return "\n".join(lines)


def _valid_gt_counts(coco_gt: Any, img_ids: Sequence[int], cat_ids: Sequence[int],
                     area_rngs: Sequence[Sequence[float]]) -> np.ndarray:
    """Ground truths that count for recall (``npig``), per category and area range: [K, A].

    As in both evaluators: not crowd (``ignore`` is ``iscrowd``) and ``lo <= area <= hi``.
    """
    anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=list(img_ids), catIds=list(cat_ids)))
    cat_index = {int(c): k for k, c in enumerate(cat_ids)}
    k = np.fromiter((cat_index[int(a["category_id"])] for a in anns), dtype=np.int64, count=len(anns))
    area = np.fromiter((float(a.get("area", 0.0)) for a in anns), dtype=np.float64, count=len(anns))
    crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), dtype=bool, count=len(anns))
    counts = np.zeros((len(cat_ids), len(area_rngs)), dtype=np.int64)
    for a, (lo, hi) in enumerate(area_rngs):
        valid = ~crowd & (area >= float(lo)) & (area <= float(hi))
        counts[:, a] = np.bincount(k[valid], minlength=len(cat_ids))
    return counts


def _pycocotools_precision(precision: np.ndarray, second_tp: np.ndarray, npig: np.ndarray) -> np.ndarray:
    """Turn faster_coco_eval's ``eval['precision']`` [T, R, K, A, M] into pycocotools' (a copy).

    pycocotools computes a curve's precision as ``tp / (tp + fp + eps)``; faster_coco_eval as
    ``tp / (tp + fp)``. For ``tp + fp >= 2`` adding eps (2**-52) rounds away, so the two differ
    only at points with one valid detection that is a true positive: 1.0 here, ``1/(1+eps)`` in
    pycocotools. After the right-to-left maximum (the interpolation), an entry of 1.0 still
    is 1.0 in pycocotools if the curve also reaches precision 1 with two or more detections,
    which happens exactly when its second true positive comes with precision 1 (the first two
    valid detections are true positives). ``second_tp`` [T, K, A, M] is the interpolated
    precision at the first recall above 1/npig, i.e. at the second true positive (0 if there is
    none). Where it is below 1, every 1.0 of the curve comes from the single first detection
    and becomes ``1/(1+eps)``. Nothing else differs: recall and scores are identical.
    """
    out = np.array(precision, dtype=np.float64, copy=True)
    kk, aa = np.nonzero(npig > 0)  # curves without ground truth stay -1 in both
    if kk.size == 0:
        return out
    curves = out[:, :, kk, aa, :]  # [T, R, n, M]
    single = (second_tp[:, kk, aa, :] != 1.0)[:, None, :, :] & (curves == 1.0)
    curves[single] = _ONE_TP_PRECISION
    out[:, :, kk, aa, :] = curves
    return out


class CocoEvaluator:
    """Accumulates per-image detections and scores them as pycocotools' ``COCOeval`` (bbox) does.

    Detections carry contiguous labels ``0..K-1`` (the framework contract); the dataset
    owns the mapping back to category ids, given here as ``label_to_cat_id``.

    ``backend`` picks the implementation: ``"pycocotools"`` (default) or ``"faster_coco_eval"``
    (optional package ``faster-coco-eval``, same 12 numbers and per-class table, faster). With
    either, ``coco_eval`` after ``evaluate`` is a pycocotools ``COCOeval`` holding ``params``,
    ``eval`` (precision/recall/scores) and ``stats``; with faster_coco_eval it was not run by
    pycocotools (its ``evalImgs`` is empty) and only summarized by it.
    """

    #: The metric the trainer keeps ``best.pth`` by (``trainer.best_metric=auto``).
    primary_metric: str = "bbox_mAP"

    def __init__(
        self,
        coco_gt: COCO | str,
        label_to_cat_id: Sequence[int],
        class_names: Sequence[str] | None = None,
        backend: str = "pycocotools",
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(
                f"evaluation.backend={backend!r} is not a COCO evaluation backend; choose one of "
                f"{', '.join(BACKENDS)}.{did_you_mean(str(backend), BACKENDS)}"
            )
        self.backend: str = backend
        self._faster: tuple[Any, Any] | None = _import_faster_coco_eval() if backend == "faster_coco_eval" else None
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
        self._faster_gt: Any = None  # faster_coco_eval.COCO over the same annotation dicts
        if self._faster is not None:
            self._faster_gt = self._faster[0]()
            # A shallow copy: the same annotation dicts, on which both evaluators set 'ignore' = iscrowd.
            self._faster_gt.dataset = dict(self.coco_gt.dataset)
            self._faster_gt.createIndex()

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
        """Evaluate the processed images with the backend and return the 12 stats by name.

        If nothing was processed, every ground-truth image is evaluated with no detections
        (mAP 0), so an untrained model reads as 0 rather than pycocotools' -1 sentinel.
        Values of -1 can still appear where pycocotools gives them (e.g. no small objects).
        """
        img_ids = sorted(self._img_ids) if self._img_ids else sorted(self._gt_img_ids)
        # Restrict to the categories the model can predict (same as all of them when the
        # mapping covers the annotation file), like mmdetection does.
        cat_ids = sorted(self.label_to_cat_id)
        with _quiet():
            if self.backend == "faster_coco_eval":
                coco_eval = self._accumulate_faster(img_ids, cat_ids)
            else:
                coco_dt = self._results_coco()
                coco_eval = COCOeval(self.coco_gt, coco_dt, "bbox")
                coco_eval.params.imgIds = img_ids
                coco_eval.params.catIds = cat_ids
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
        return write_results_json(self._results, path)

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

    def _faster_results_coco(self) -> Any:
        """The results as a ``faster_coco_eval.COCO``, as its ``loadRes`` makes them (bbox results).

        Built directly: ``loadRes`` would also add a polygon per box, which bbox evaluation never
        reads, and older versions crash on an empty list.
        """
        faster_coco, _ = self._faster
        dt = faster_coco()
        anns = [
            {
                "image_id": r["image_id"],
                "category_id": r["category_id"],
                "bbox": list(r["bbox"]),
                "score": r["score"],
                "area": r["bbox"][2] * r["bbox"][3],  # as loadRes: w * h
                "id": i,  # as loadRes: 1, 2, ...
                "iscrowd": 0,
            }
            for i, r in enumerate(self._results, start=1)
        ]
        dt.dataset = {
            "info": copy.deepcopy(self.coco_gt.dataset.get("info", {})),
            "images": list(self.coco_gt.dataset.get("images", [])),
            "categories": copy.deepcopy(self.coco_gt.dataset.get("categories", [])),
            "annotations": anns,
        }
        dt.createIndex()
        return dt

    def _accumulate_faster(self, img_ids: list[int], cat_ids: list[int]) -> COCOeval:
        """Match and accumulate with faster_coco_eval; return a pycocotools ``COCOeval`` holding the
        result with pycocotools' exact precision, ready for pycocotools' ``summarize``."""
        _, faster_eval = self._faster
        coco_dt = self._faster_results_coco()
        ev = faster_eval(self._faster_gt, coco_dt, "bbox", print_function=_discard)
        ev.params.imgIds = list(img_ids)
        ev.params.catIds = list(cat_ids)
        ref = COCOeval(iouType="bbox").params  # pycocotools' defaults, which summarize() assumes
        for name in ("iouThrs", "recThrs", "areaRng", "maxDets"):
            if not np.array_equal(np.asarray(getattr(ev.params, name)), np.asarray(getattr(ref, name))):
                raise RuntimeError(f"faster_coco_eval's default params.{name} differs from pycocotools'")

        # Extra recall thresholds that sample each curve at its second true positive (see
        # _pycocotools_precision): 2**-j is above 1/npig and at most 2/npig for 2**j < npig <= 2**(j+1),
        # both exactly (powers of two), so one threshold per power of two serves every curve. The C++
        # accumulation reads params.recThrs and finds each threshold on its own, so the extra columns
        # leave the first R untouched.
        npig = _valid_gt_counts(self._faster_gt, img_ids, cat_ids, ref.areaRng)
        probe_j = np.array([[(int(g) - 1).bit_length() - 1 for g in row] for row in npig], dtype=np.int64)
        probe_j = probe_j.reshape(npig.shape)  # npig = 1: j = -1, threshold 2, never reached (no 2nd TP)
        probes = 2.0 ** -np.arange(-1, int(probe_j.max(initial=-1)) + 1, dtype=np.float64)
        rec_thrs = ev.params.recThrs
        ev.params.recThrs = np.concatenate([rec_thrs, probes])
        try:
            ev.evaluate()
            ev.accumulate()
        finally:
            ev.params.recThrs = rec_thrs
        num_r = len(rec_thrs)
        precision = np.asarray(ev.eval["precision"], dtype=np.float64)
        kk, aa = np.indices(npig.shape)
        second_tp = precision[:, num_r + 1 + probe_j, kk, aa, :]  # [T, K, A, M]

        result = COCOeval(self.coco_gt, coco_dt, "bbox")
        result.params.imgIds = list(img_ids)
        result.params.catIds = list(cat_ids)
        counts = list(precision[:, :num_r].shape)
        result.eval = {
            "params": result.params,
            "counts": counts,
            "date": ev.eval.get("date", ""),
            "precision": _pycocotools_precision(precision[:, :num_r], second_tp, npig),
            "recall": np.asarray(ev.eval["recall"], dtype=np.float64).copy(),
            "scores": np.asarray(ev.eval["scores"], dtype=np.float64)[:, :num_r].copy(),
        }
        return result

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
