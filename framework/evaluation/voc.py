"""Pascal VOC detection metric: AP at one IoU threshold (0.5) per class and their mean (mAP).

Same ``reset/process/evaluate`` API as :class:`framework.evaluation.coco.CocoEvaluator`, so the
runner can use either. The numbers follow the official VOC devkit (``VOCevaldet.m`` / ``VOCap.m``):

* Per class, every detection of the evaluated images is ranked by score, descending. Ties keep a
  fixed order (a *stable* sort of the detections concatenated by ascending image id, each image's
  detections in the order the model returned them), so the result never depends on the order in
  which images were processed. (The Python ports sort with ``np.argsort``, which is not stable.)
* Going down that ranking, a detection is compared with **every** ground-truth box of its class in
  its image, matched or not, and takes the one with the highest IoU (the first on ties):

  - IoU ``>= iou_thr`` (the MATLAB devkit's ``ovmax>=VOCopts.minoverlap``; mmdetection does the
    same; the Python ``voc_eval.py`` of py-faster-rcnn/detectron2 uses ``>``, which differs only
    when an IoU is exactly the threshold):

    - that box is *difficult*: the detection is ignored (neither TP nor FP);
    - that box is still unmatched: true positive, and the box becomes matched;
    - that box is already matched: false positive (a duplicate). The detection is *not* passed on
      to the next best box, exactly as in the devkit.
  - otherwise (or no box of its class in the image): false positive.
* recall = TP / (non-difficult ground-truth boxes of the class), precision = TP / (TP + FP) after
  each detection. Difficult boxes that nobody detects are not misses.
* ``interpolation="voc07"``: 11-point AP, the mean over t = 0, 0.1, ..., 1 of the highest precision
  at recall >= t (0 where recall never reaches t). The thresholds are ``np.arange(0, 1.1, 0.1)`` as
  in the Python ports (so the 4th is 0.30000000000000004: a recall of exactly 3/10 does not reach
  it). ``"voc12"``: the area under the precision envelope (precision made monotone decreasing from
  the right, summed over the recall steps), the devkit's ``VOCap`` / ``voc_ap(use_07_metric=False)``.
* A class with no non-difficult ground truth in the evaluated images has AP = NaN and is left out of
  the mean, as mmdetection does (the devkit itself would divide by zero). A class with ground truth
  but no detections has AP 0. ``voc_mAP`` is NaN only if no class has ground truth.

Pixel convention: boxes are continuous XYXY, pixel ``i`` spanning ``[i, i + 1]``, and the area of a
box is ``(x1 - x0) * (y1 - y0)`` with no ``+ 1``. VOC's XML boxes are 1-based and inclusive; the VOC
loader turns them into this convention with ``x0 = xmin - 1, x1 = xmax`` (same for y), so
``x1 - x0 = xmax - xmin + 1``: the IoU here, on converted boxes, equals the legacy devkit's
``+ 1`` IoU on the original boxes (tests/evaluation/test_voc.py shows it). Detections must be in the
same continuous, original-image-pixel convention, which is what the models output.

Reporting: ``evaluate()`` returns ``{"voc_mAP": mAP}``; per-class numbers are in ``per_class``
(``class``, ``AP50`` — the AP at ``iou_thr``, named as in the COCO evaluator's rows —, ``num_gts``
(non-difficult), ``num_dets``, ``recall``). ``summary`` is a two-line header (setting, images,
classes with ground truth, mAP) and ``format_per_class()`` the mmdetection-style table; the trainer
logs one after the other.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framework.evaluation.coco import _fmt, write_results_json

__all__ = ["INTERPOLATIONS", "VOCEvaluator", "pairwise_iou", "voc_ap"]

#: Accepted values of ``interpolation``.
INTERPOLATIONS: tuple[str, ...] = ("voc07", "voc12")

_INTERPOLATION_TEXT = {
    "voc07": "11-point interpolation (VOC2007)",
    "voc12": "area under the precision envelope (VOC2010+)",
}


def voc_ap(recall: np.ndarray, precision: np.ndarray, interpolation: str = "voc12") -> float:
    """AP from the cumulative ``recall`` / ``precision`` of a ranked detection list (devkit ``voc_ap``).

    ``interpolation="voc07"`` is the 11-point mean, ``"voc12"`` the area under the monotone
    precision envelope. Empty inputs (no detections) give 0.
    """
    rec = np.asarray(recall, dtype=np.float64).reshape(-1)
    prec = np.asarray(precision, dtype=np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"recall has {rec.size} values but precision has {prec.size}")
    if interpolation == "voc07":
        # The devkit adds p / 11 eleven times; summing first keeps a perfect AP at exactly 1.0.
        points = [float(np.max(prec[rec >= t])) if (rec >= t).any() else 0.0 for t in np.arange(0.0, 1.1, 0.1)]
        return math.fsum(points) / 11.0
    if interpolation == "voc12":
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # envelope: max precision at this recall or higher
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


def pairwise_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU matrix (N, M) of XYXY boxes, continuous pixels (area = (x1 - x0) * (y1 - y0), no ``+ 1``).

    The same float operations as ``torchvision.ops.box_iou`` (so the same bits in float64), without
    its per-call overhead; two zero-area boxes give 0 instead of 0 / 0.
    """
    a = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _array(value: Any, dtype: type, name: str, image_id: int) -> np.ndarray:
    """A numpy copy of a tensor / array / list (on the CPU, detached)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.array(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"image {image_id}: {name} cannot be read as {np.dtype(dtype).name}: {err}") from err


class VOCEvaluator:
    """Accumulates per-image detections and scores them with the Pascal VOC AP (see the module docstring).

    ``annotations`` holds one dict per ground-truth image: ``image_id`` (int), ``boxes`` (N, 4) XYXY
    in original-image pixels, ``labels`` (N,) in ``0..K-1`` and ``difficult`` (N,) bool (all False
    when absent). Detections carry the same contiguous labels.
    """

    #: The metric the trainer ranks checkpoints by.
    primary_metric: str = "voc_mAP"

    def __init__(
        self,
        annotations: Sequence[Mapping[str, Any]],
        class_names: Sequence[str],
        interpolation: str = "voc07",
        iou_thr: float = 0.5,
    ) -> None:
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        iou_thr = float(iou_thr)
        if not 0.0 < iou_thr <= 1.0:
            raise ValueError(f"iou_thr must be in (0, 1], got {iou_thr}")
        self.class_names: list[str] = [str(n) for n in class_names]
        if not self.class_names:
            raise ValueError("class_names must not be empty")
        self.interpolation: str = interpolation
        self.iou_thr: float = iou_thr

        num_classes = len(self.class_names)
        # image id -> (boxes float64 (N, 4), labels int64 (N,), difficult bool (N,))
        self._gt: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for ann in annotations:
            img_id = int(ann["image_id"])
            if img_id in self._gt:
                raise ValueError(f"image id {img_id} appears twice in the annotations")
            boxes = _array(ann["boxes"], np.float64, "boxes", img_id).reshape(-1, 4)
            labels = _array(ann["labels"], np.int64, "labels", img_id).reshape(-1)
            difficult = ann.get("difficult")
            difficult = (
                np.zeros(len(labels), dtype=bool)
                if difficult is None
                else _array(difficult, bool, "difficult", img_id).reshape(-1)
            )
            if not (len(boxes) == len(labels) == len(difficult)):
                raise ValueError(
                    f"annotation of image {img_id}: {len(boxes)} boxes, {len(labels)} labels, "
                    f"{len(difficult)} difficult flags"
                )
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
                raise ValueError(
                    f"annotation of image {img_id}: labels must be in [0, {num_classes}), got "
                    f"[{int(labels.min())}, {int(labels.max())}]"
                )
            self._gt[img_id] = (boxes, labels, difficult)

        # image id -> (boxes float64 (D, 4), scores float64 (D,), labels int64 (D,))
        self._dets: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._img_ids: list[int] = []
        self._seen: set[int] = set()
        self.summary: str = ""
        self.per_class: list[dict[str, Any]] = []
        self.reset()

    # ------------------------------------------------------------------ API

    def reset(self) -> None:
        """Forget everything processed so far, so one evaluator serves every evaluation round."""
        self._dets = {}
        self._img_ids = []
        self._seen = set()
        self.summary = ""
        self.per_class = []

    def process(self, image_ids: Sequence[int], detections: Sequence[Mapping[str, torch.Tensor]]) -> None:
        """Record one batch of detections (``boxes`` XYXY in original pixels, ``scores``, contiguous ``labels``).

        Images with no detections still count: their ground truth becomes misses. An image seen
        before (DistributedSampler pads with repeats) is skipped with a warning: first one wins.
        """
        if len(image_ids) != len(detections):
            raise ValueError(f"{len(image_ids)} image ids but {len(detections)} detection dicts")
        num_classes = len(self.class_names)
        for raw_id, det in zip(image_ids, detections):
            img_id = int(raw_id)
            if img_id not in self._gt:
                raise ValueError(f"image id {img_id} is not in the ground-truth annotations")
            if img_id in self._seen:
                warnings.warn(f"image id {img_id} processed twice; ignoring the repeat", stacklevel=2)
                continue
            boxes = _array(det["boxes"], np.float64, "boxes", img_id).reshape(-1, 4)
            scores = _array(det["scores"], np.float64, "scores", img_id).reshape(-1)
            labels = _array(det["labels"], np.int64, "labels", img_id).reshape(-1)
            if not (len(boxes) == len(scores) == len(labels)):
                raise ValueError(
                    f"image {img_id}: {len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels"
                )
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
                raise ValueError(
                    f"image {img_id}: labels must be in [0, {num_classes}), got "
                    f"[{int(labels.min())}, {int(labels.max())}]"
                )
            if np.isnan(scores).any():
                raise ValueError(f"image {img_id}: scores contain NaN, so detections cannot be ranked")
            self._seen.add(img_id)
            self._img_ids.append(img_id)
            self._dets[img_id] = (boxes, scores, labels)

    def evaluate(self) -> dict[str, float]:
        """AP per class (in ``per_class``) and their mean, returned as ``{"voc_mAP": mAP}``.

        Only processed images are evaluated. If nothing was processed, every ground-truth image is
        evaluated with no detections (mAP 0), so an untrained model reads as 0, as with COCO.
        """
        num_classes = len(self.class_names)
        img_ids = sorted(self._img_ids) if self._img_ids else sorted(self._gt)
        num_pos = np.zeros(num_classes, dtype=np.int64)
        # (scores, labels, tp, fp) of each image, in ascending image id: the ranking's tie order
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for img_id in img_ids:
            gt_boxes, gt_labels, difficult = self._gt[img_id]
            num_pos += np.bincount(gt_labels[~difficult], minlength=num_classes)
            det = self._dets.get(img_id)
            if det is None or not len(det[1]):
                continue
            boxes, scores, labels = det
            tp, fp = self._match_image(boxes, scores, labels, gt_boxes, gt_labels, difficult)
            parts.append((scores, labels, tp, fp))
        if parts:
            all_scores, all_labels, all_tp, all_fp = (np.concatenate(arrays) for arrays in zip(*parts))
        else:
            all_scores, all_labels = np.zeros(0), np.zeros(0, dtype=np.int64)
            all_tp, all_fp = np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)

        self.per_class = []
        aps = []
        for c, name in enumerate(self.class_names):
            keep = all_labels == c
            scores, tp, fp = all_scores[keep], all_tp[keep], all_fp[keep]
            npos = int(num_pos[c])
            if npos == 0:
                ap = recall = float("nan")
            else:
                order = np.argsort(-scores, kind="stable")
                tp_cum = np.cumsum(tp[order], dtype=np.float64)
                fp_cum = np.cumsum(fp[order], dtype=np.float64)
                rec = tp_cum / npos
                prec = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
                ap = voc_ap(rec, prec, self.interpolation)
                recall = float(rec[-1]) if rec.size else 0.0
                aps.append(ap)
            self.per_class.append(
                {"class": name, "AP50": ap, "num_gts": npos, "num_dets": int(scores.size), "recall": recall}
            )
        m_ap = float(np.mean(aps)) if aps else float("nan")
        self.summary = (
            f"Pascal VOC AP at IoU >= {self.iou_thr:g}, {_INTERPOLATION_TEXT[self.interpolation]}: "
            f"{len(img_ids)} images, {len(aps)}/{num_classes} classes with ground truth\n"
            f"mAP = {_fmt(m_ap)}"
        )
        return {"voc_mAP": m_ap}

    @property
    def results(self) -> list[dict[str, Any]]:
        """The detections so far as COCO result dicts (XYWH, ``category_id = label + 1``), in processing order."""
        out = []
        for img_id in self._img_ids:
            boxes, scores, labels = self._dets[img_id]
            xywh = boxes.copy()
            xywh[:, 2:] -= xywh[:, :2]
            for bbox, score, label in zip(xywh.tolist(), scores.tolist(), labels.tolist()):
                out.append({"image_id": img_id, "category_id": label + 1, "bbox": bbox, "score": score})
        return out

    @property
    def image_ids(self) -> list[int]:
        """Image ids processed so far, in processing order."""
        return list(self._img_ids)

    def write_results(self, path: str | os.PathLike[str]) -> Path:
        """Write the detections as a COCO results JSON (a list), creating parent folders."""
        return write_results_json(self.results, path)

    def format_per_class(self) -> str:
        """Aligned per-class table (class, gts, dets, recall, AP) with the mAP last (call after ``evaluate``).

        ``gts`` counts non-difficult boxes; classes without any show AP ``nan`` and are not in the mAP.
        """
        if not self.per_class:
            return "(no per-class results: call evaluate() first)"
        width = max([len("class"), len("mAP")] + [len(str(r["class"])) for r in self.per_class])
        header = f"{'class':<{width}}  {'gts':>6}  {'dets':>7}  {'recall':>6}  {'AP':>6}"
        rule = "-" * len(header)
        lines = [header, rule]
        for row in self.per_class:
            lines.append(
                f"{row['class']:<{width}}  {row['num_gts']:>6}  {row['num_dets']:>7}  "
                f"{_fmt(row['recall']):>6}  {_fmt(row['AP50']):>6}"
            )
        valid = [row["AP50"] for row in self.per_class if not math.isnan(row["AP50"])]
        m_ap = float(np.mean(valid)) if valid else float("nan")
        lines += [rule, f"{'mAP':<{width}}  {'':>6}  {'':>7}  {'':>6}  {_fmt(m_ap):>6}"]
        return "\n".join(lines)

    # ------------------------------------------------------------ internals

    def _match_image(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        gt_boxes: np.ndarray,
        gt_labels: np.ndarray,
        difficult: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """TP / FP flags of one image's detections (in their given order); ignored ones are neither.

        A detection's best box does not depend on what was matched before (the devkit compares
        with every box), so the only sequential step — the first detection to reach a box wins it,
        later ones are duplicates — is "first occurrence in score order", done with ``np.unique``.
        """
        num = len(scores)
        if len(gt_labels):
            iou = pairwise_iou(boxes, gt_boxes)
            iou[labels[:, None] != gt_labels[None, :]] = -np.inf  # only boxes of the detection's class
            best = iou.argmax(axis=1)  # first index on ties, like the devkit
            hit = iou[np.arange(num), best] >= self.iou_thr
            candidates = hit & ~difficult[best]  # a hit on a difficult box is ignored
        else:
            best = np.zeros(num, dtype=np.int64)
            hit = candidates = np.zeros(num, dtype=bool)
        rank = np.argsort(-scores, kind="stable")  # this image's part of the global ranking
        ranked = rank[candidates[rank]]
        _, first = np.unique(best[ranked], return_index=True)
        tp = np.zeros(num, dtype=bool)
        tp[ranked[first]] = True
        fp = ~hit | (candidates & ~tp)
        return tp, fp
