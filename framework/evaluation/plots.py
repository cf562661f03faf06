"""Ultralytics-style evaluation plots: precision-recall curves, F1-confidence curves and a confusion matrix.

These plots are for reading a model, not for reporting it: the metrics a run reports come from the evaluators
(pycocotools / VOC). The numbers here (AP@0.5 in the PR legend, the best-F1 threshold) follow the usual
definitions closely but are computed by this module.

Inputs, shared by every function:

* ``annotations`` -- a sequence of per-image ground-truth dicts ``{"image_id": int, "boxes": (N, 4) XYXY in
  original pixels, "labels": (N,) ints in 0..K-1, optional "ignore": (N,) bool}``. ``ignore`` marks crowd regions
  / VOC "difficult" objects: they are never counted as ground truth (no misses), and a detection that matches one
  is neither a true nor a false positive. Arrays may be numpy arrays, torch tensors or lists.
* ``detections`` -- a mapping ``image_id -> {"boxes": (M, 4) XYXY original pixels, "scores": (M,), "labels":
  (M,)}``. An image of ``annotations`` that has no entry has no detections; entries for image ids that are not in
  ``annotations`` are ignored (as pycocotools ignores results outside its image set).
* ``task`` -- ``"bbox"`` (default) matches boxes; ``"segm"`` matches instance masks by mask IoU: then every
  ground-truth dict also has ``"rles"`` and every detection dict ``"rles"`` (COCO RLE dicts at the original image
  size, one per box, framework/evaluation/masks.py), and the boxes are not used.

Matching:

* Curves (``detection_curves``): per image and class, detections in descending score order each take the unmatched
  non-ignored ground-truth box of the same class with the highest IoU >= ``iou_thr`` (true positive); failing that,
  one that overlaps an ignored box of its class at IoU >= ``iou_thr`` is dropped (ignored boxes may absorb any
  number of detections, like COCO crowd regions; plain IoU is used for them, not COCO's intersection over the
  detection's area); every other detection is a false positive. This is COCOeval's greedy matching.
* Confusion matrix (``confusion_matrix``): ultralytics' definition -- detections with score >= ``conf_thr`` are
  matched to non-ignored ground truth of *any* class at IoU >= ``iou_thr``, one-to-one, greedily in descending
  IoU order. See that function for where each outcome is counted.

Plots are drawn on ``matplotlib.figure.Figure`` objects with an explicit ``FigureCanvasAgg`` canvas: nothing goes
through pyplot's global figure registry or touches a display, and no figure has to be closed. ``write_plots``
returns the figures so a caller can pass them to ``SummaryWriter.add_figure`` (or call ``figure_to_rgb`` for an
``(H, W, 3)`` uint8 array); dropping the references frees them.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TASK_PREFIX", "confusion_matrix", "detection_curves", "figure_to_rgb", "normalize_confusion",
           "write_plots"]

#: Number of points of the confidence grid (F1/P/R vs confidence) and of the recall grid (PR curve), as ultralytics.
GRID_POINTS = 1000
#: With more classes than this the per-class curves are drawn thin and grey, without legend entries (as ultralytics).
MAX_LEGEND_CLASSES = 20
#: With at most this many rows/columns the confusion-matrix cells are annotated with their values.
MAX_ANNOTATED_CELLS = 30

#: The file-name prefix of each task's plots: pr_curve.png for boxes, segm_pr_curve.png for masks.
TASK_PREFIX = {"bbox": "", "segm": "segm_"}

# gt regions, gt labels, gt ignore, det regions, det scores, det labels. Regions are (N, 4) float64 XYXY boxes, or
# (N,) object arrays of RLE dicts (task "segm"): both index, reorder and mask alike.
_Image = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# ------------------------------------------------------------------------------------------------ input handling
def _as_numpy(value: Any, dtype: Any) -> np.ndarray:
    if value is None:
        return np.zeros(0, dtype=dtype)
    if hasattr(value, "detach"):  # torch.Tensor without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _regions(value: Any, task: str) -> np.ndarray:
    """Boxes as an (N, 4) float64 array, or RLE dicts as an (N,) object array."""
    if task == "bbox":
        return _as_numpy(value, np.float64).reshape(-1, 4)
    rles = list(value or [])
    out = np.empty(len(rles), dtype=object)
    out[:] = [dict(r) for r in rles]
    return out


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boxes or of masks (pycocotools' RLE IoU)."""
    if a.dtype != object:
        return _box_iou(a, b)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    from pycocotools import mask as mask_utils

    return np.asarray(mask_utils.iou(list(a), list(b), [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def _prepare(annotations: Sequence[Mapping[str, Any]], detections: Mapping[Any, Mapping[str, Any]] | None,
             num_classes: int, task: str = "bbox") -> list[_Image]:
    """Per image: gt regions, gt labels, gt ignore flags, det regions, det scores, det labels (dets sorted by
    descending score, stably). Regions are boxes, or masks for task ``segm``."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if task not in TASK_PREFIX:
        raise ValueError(f"task must be one of {tuple(TASK_PREFIX)}, got {task!r}")
    key = "rles" if task == "segm" else "boxes"
    dets_by_id: dict[int, Mapping[str, Any]] = {int(k): v for k, v in (detections or {}).items()}
    images: list[_Image] = []
    seen: set[int] = set()
    for ann in annotations:
        img_id = int(ann["image_id"])
        if img_id in seen:
            raise ValueError(f"image_id {img_id} appears more than once in annotations")
        seen.add(img_id)
        if task == "segm" and "rles" not in ann:
            raise ValueError(f"image {img_id}: the ground truth has no 'rles' (instance masks), which segm plots need")
        gt_boxes = _regions(ann.get(key), task)
        gt_labels = _as_numpy(ann.get("labels"), np.int64).reshape(-1)
        ignore = ann.get("ignore")
        gt_ignore = (np.zeros(len(gt_labels), dtype=bool) if ignore is None
                     else _as_numpy(ignore, bool).reshape(-1))
        if not len(gt_boxes) == len(gt_labels) == len(gt_ignore):
            raise ValueError(f"image {img_id}: {len(gt_boxes)} gt boxes, {len(gt_labels)} labels, "
                             f"{len(gt_ignore)} ignore flags")
        det = dets_by_id.get(img_id, {})
        det_boxes = _regions(det.get(key), task)
        det_scores = _as_numpy(det.get("scores"), np.float64).reshape(-1)
        det_labels = _as_numpy(det.get("labels"), np.int64).reshape(-1)
        if not len(det_boxes) == len(det_scores) == len(det_labels):
            raise ValueError(f"image {img_id}: {len(det_boxes)} detection boxes, {len(det_scores)} scores, "
                             f"{len(det_labels)} labels")
        for what, labels in (("ground-truth", gt_labels), ("detection", det_labels)):
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"image {img_id}: {what} label out of range 0..{num_classes - 1}: "
                                 f"{sorted(set(labels.tolist()))}")
        order = np.argsort(-det_scores, kind="stable")
        images.append((gt_boxes, gt_labels, gt_ignore, det_boxes[order], det_scores[order], det_labels[order]))
    return images


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of XYXY boxes; 0 where the union is empty."""
    area_a = (a[:, 2] - a[:, 0]).clip(min=0) * (a[:, 3] - a[:, 1]).clip(min=0)
    area_b = (b[:, 2] - b[:, 0]).clip(min=0) * (b[:, 3] - b[:, 1]).clip(min=0)
    wh = (np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2])).clip(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


# ------------------------------------------------------------------------------------------------ curves
def _match_image(image: _Image, iou_thr: float) -> tuple[np.ndarray, np.ndarray]:
    """COCO-style greedy matching of one image's (score-sorted) detections: (tp, ignored) boolean flags."""
    gt_boxes, gt_labels, gt_ignore, det_boxes, _, det_labels = image
    n_det = len(det_labels)
    tp = np.zeros(n_det, dtype=bool)
    ignored = np.zeros(n_det, dtype=bool)
    if n_det == 0 or len(gt_labels) == 0:
        return tp, ignored
    iou = _overlap(det_boxes, gt_boxes)
    ok = (iou >= iou_thr) & (det_labels[:, None] == gt_labels[None, :])
    cand = ok & ~gt_ignore[None, :]
    n_cand = cand.sum(1)
    rows = np.flatnonzero(n_cand)
    if rows.size:
        # For each detection with candidates: candidate gts by descending IoU (ties: lower gt index first).
        order = np.argsort(-np.where(cand[rows], iou[rows], -1.0), axis=1, kind="stable")
        taken = [False] * len(gt_labels)
        for d, gts, k in zip(rows.tolist(), order.tolist(), n_cand[rows].tolist()):
            for g in gts[:k]:
                if not taken[g]:
                    taken[g] = True
                    tp[d] = True
                    break
    if gt_ignore.any():
        ignored = ~tp & (ok & gt_ignore[None, :]).any(1)
    return tp, ignored


def _curves(images: list[_Image], num_classes: int, iou_thr: float) -> dict[str, Any]:
    confs, labels, tps = [], [], []
    num_gt = np.zeros(num_classes, dtype=np.int64)
    for image in images:
        gt_labels, gt_ignore = image[1], image[2]
        num_gt += np.bincount(gt_labels[~gt_ignore], minlength=num_classes)
        tp, ignored = _match_image(image, iou_thr)
        keep = ~ignored
        confs.append(image[4][keep])
        labels.append(image[5][keep])
        tps.append(tp[keep])
    conf = np.concatenate(confs) if confs else np.zeros(0)
    label = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    tp = np.concatenate(tps) if tps else np.zeros(0, dtype=bool)
    # Group by class, each group by descending score (stable, so image order breaks ties deterministically).
    order = np.lexsort((-conf, label))
    conf, label, tp = conf[order], label[order], tp[order]
    num_det = np.bincount(label, minlength=num_classes).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(num_det)])

    grid = np.linspace(0.0, 1.0, GRID_POINTS)
    precision = np.zeros((num_classes, GRID_POINTS))
    recall = np.zeros((num_classes, GRID_POINTS))
    pr_precision = np.zeros((num_classes, GRID_POINTS))
    ap = np.zeros(num_classes)
    valid = num_gt > 0
    for c in range(num_classes):
        c_conf = conf[starts[c]:starts[c + 1]]
        c_tp = tp[starts[c]:starts[c + 1]]
        n_gt = num_gt[c]
        if not valid[c]:
            recall[c] = np.nan
            pr_precision[c] = np.nan
            ap[c] = np.nan
        if c_conf.size == 0:
            continue  # no detections: precision, recall, F1 and AP are 0 (nan without ground truth), as ultralytics
        tpc = np.cumsum(c_tp)
        # Detections kept at threshold t are those with score >= t: a step function of t, evaluated exactly.
        kept = np.searchsorted(-c_conf, -grid, side="right")
        tp_at = np.where(kept > 0, tpc[np.maximum(kept - 1, 0)], 0)
        precision[c] = np.where(kept > 0, tp_at / np.maximum(kept, 1), 1.0)
        if not valid[c]:
            continue
        recall[c] = tp_at / n_gt
        # PR points at each distinct score (tied scores enter together), then the monotone envelope.
        last = np.flatnonzero(np.append(c_conf[1:] != c_conf[:-1], True))
        p = tpc[last] / (last + 1)
        r = tpc[last] / n_gt
        envelope = np.maximum.accumulate(p[::-1])[::-1]
        ap[c] = float(np.sum(np.diff(np.concatenate([[0.0], r])) * envelope))
        j = np.searchsorted(r, grid, side="left")
        pr_precision[c] = np.where(j < len(r), envelope[np.minimum(j, len(r) - 1)], 0.0)

    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1[~valid] = np.nan
    if valid.any():
        mean_precision = precision[valid].mean(0)
        mean_recall = recall[valid].mean(0)
        mean_f1 = f1[valid].mean(0)
        mean_pr_precision = pr_precision[valid].mean(0)
        mean_ap = float(ap[valid].mean())
    else:
        mean_precision = mean_recall = mean_f1 = np.zeros(GRID_POINTS)
        mean_pr_precision = np.zeros(GRID_POINTS)
        mean_ap = float("nan")
    best = int(np.argmax(mean_f1))  # first maximum: the lowest threshold reaching the best mean F1
    return {
        "conf": grid,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_precision": mean_precision,
        "mean_recall": mean_recall,
        "mean_f1": mean_f1,
        "pr_recall": grid.copy(),
        "pr_precision": pr_precision,
        "mean_pr_precision": mean_pr_precision,
        "ap": ap,
        "map": mean_ap,
        "num_gt": num_gt,
        "num_det": num_det,
        "valid": valid,
        "iou_thr": float(iou_thr),
        "best_index": best,
        "best_conf": float(grid[best]),
        "best_f1": float(mean_f1[best]),
        "best_precision": float(mean_precision[best]),
        "best_recall": float(mean_recall[best]),
    }


def detection_curves(annotations: Sequence[Mapping[str, Any]], detections: Mapping[Any, Mapping[str, Any]],
                     num_classes: int, iou_thr: float = 0.5, task: str = "bbox") -> dict[str, Any]:
    """Precision, recall and F1 versus confidence, PR curves and AP per class, at one IoU threshold.

    Matching is COCOeval's greedy matching (module docstring). Precision/recall/F1 at a confidence ``t`` are those
    of the detections with score >= ``t``, evaluated exactly (a step function, tied scores entering together) on
    ``GRID_POINTS`` = 1000 thresholds ``linspace(0, 1, 1000)`` -- the grid of ultralytics' ``ap_per_class``, which
    interpolates linearly between detections instead. Above a class's top score its precision is 1 and recall 0;
    a class without detections has precision, recall, F1 and AP 0.

    AP is the all-point (VOC2010+/ultralytics "continuous") area under the monotone precision envelope, with one PR
    point per distinct score; the PR curve is that envelope sampled at ``linspace(0, 1, 1000)`` recall (precision 0
    beyond the highest recall reached).

    Classes without non-ignored ground truth have recall, F1, PR curve and AP ``nan`` and are left out of the
    means ("all classes" = the classes with ground truth, as in ultralytics).

    Returns a dict of numpy arrays and floats:

    * ``conf`` (T,): the confidence grid; ``precision``, ``recall``, ``f1`` (K, T) per class;
      ``mean_precision``, ``mean_recall``, ``mean_f1`` (T,) over the classes with ground truth;
    * ``pr_recall`` (R,): the recall grid; ``pr_precision`` (K, R) per class; ``mean_pr_precision`` (R,);
    * ``ap`` (K,) AP at ``iou_thr``; ``map`` (float) their mean over classes with ground truth (nan if none);
    * ``num_gt`` (K,) non-ignored ground-truth boxes, ``num_det`` (K,) detections (ignored ones excluded),
      ``valid`` (K,) bool = ``num_gt > 0``; ``iou_thr``;
    * ``best_index``, ``best_conf``, ``best_f1``, ``best_precision``, ``best_recall``: the grid point maximising
      the mean F1 (the first, i.e. lowest, threshold if several tie; no smoothing) and the mean values there.
      Without any ground truth ``best_f1`` is 0 at ``best_conf`` 0.
    """
    return _curves(_prepare(annotations, detections, num_classes, task), num_classes, iou_thr)


# ------------------------------------------------------------------------------------------------ confusion matrix
def _confusion(images: list[_Image], num_classes: int, conf_thr: float, iou_thr: float) -> np.ndarray:
    k = num_classes
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    for gt_boxes, gt_labels, gt_ignore, det_boxes, det_scores, det_labels in images:
        keep = det_scores >= conf_thr
        det_boxes, det_labels = det_boxes[keep], det_labels[keep]
        real = ~gt_ignore
        g_boxes, g_labels = gt_boxes[real], gt_labels[real]
        det_matched = np.zeros(len(det_labels), dtype=bool)
        gt_matched = np.zeros(len(g_labels), dtype=bool)
        if len(det_labels) and len(g_labels):
            iou = _overlap(g_boxes, det_boxes)
            gi, di = np.nonzero(iou >= iou_thr)
            if gi.size:
                # Greedy one-to-one by descending IoU; ties go to the higher-scoring detection, then the lower gt.
                order = np.lexsort((gi, di, -iou[gi, di]))
                pairs_g, pairs_d = [], []
                for g, d in zip(gi[order].tolist(), di[order].tolist()):
                    if not gt_matched[g] and not det_matched[d]:
                        gt_matched[g] = det_matched[d] = True
                        pairs_g.append(g)
                        pairs_d.append(d)
                np.add.at(matrix, (g_labels[pairs_g], det_labels[pairs_d]), 1)
        np.add.at(matrix, (g_labels[~gt_matched], k), 1)  # missed: (true class, background)
        unmatched = ~det_matched
        if gt_ignore.any() and unmatched.any():  # detections on crowd / difficult regions are not counted
            unmatched &= ~(_overlap(det_boxes, gt_boxes[gt_ignore]) >= iou_thr).any(1)
        np.add.at(matrix, (k, det_labels[unmatched]), 1)  # false positive: (background, predicted class)
    return matrix


def confusion_matrix(annotations: Sequence[Mapping[str, Any]], detections: Mapping[Any, Mapping[str, Any]],
                     num_classes: int, conf_thr: float = 0.25, iou_thr: float = 0.45, task: str = "bbox") -> np.ndarray:
    """(K+1, K+1) int64 counts indexed ``[true, predicted]``; index K is background.

    Ultralytics' definition: detections with score >= ``conf_thr`` are matched to non-ignored ground truth of any
    class at IoU >= ``iou_thr``, one-to-one, greedily in descending IoU order. A matched pair counts at
    ``[gt class, predicted class]`` (off the diagonal when the class is wrong); an unmatched ground-truth box at
    ``[gt class, K]`` (missed); an unmatched detection at ``[K, predicted class]`` (false positive), unless it
    overlaps an ignored box (of any class) at IoU >= ``iou_thr``, in which case it is not counted. Ignored boxes
    themselves are never counted. ``[K, K]`` is always 0.

    Rows are the true class, columns the predicted class (ultralytics stores the transpose).
    """
    return _confusion(_prepare(annotations, detections, num_classes, task), num_classes, conf_thr, iou_thr)


def normalize_confusion(matrix: np.ndarray) -> np.ndarray:
    """Row-normalised copy of a ``[true, predicted]`` matrix: each true class's row sums to 1 (what fraction of
    its boxes was predicted as each class / missed); the background row is the share of false positives per
    predicted class. All-zero rows stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


# ------------------------------------------------------------------------------------------------ drawing
def _new_figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, tight_layout=True)
    FigureCanvasAgg(fig)
    return fig


def figure_to_rgb(fig: Any) -> np.ndarray:
    """Render a figure from this module to an ``(H, W, 3)`` uint8 RGB array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _plot_class_curves(ax: Any, x: np.ndarray, ys: np.ndarray, curves: dict[str, Any], class_names: Sequence[str],
                       label_fmt: Any) -> None:
    valid = curves["valid"]
    few = int(valid.sum()) <= MAX_LEGEND_CLASSES
    for c in np.flatnonzero(valid):
        if few:
            ax.plot(x, ys[c], linewidth=1, label=label_fmt(c))
        else:
            ax.plot(x, ys[c], linewidth=1, color="grey", alpha=0.5)


def _finish_axes(ax: Any, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small", frameon=False)


def _iou_name(task: str) -> str:
    return "mask IoU" if task == "segm" else "IoU"


def _pr_figure(curves: dict[str, Any], class_names: Sequence[str], task: str = "bbox") -> Any:
    fig = _new_figure((9, 6))
    ax = fig.add_subplot(1, 1, 1)
    _plot_class_curves(ax, curves["pr_recall"], curves["pr_precision"], curves, class_names,
                       lambda c: f"{class_names[c]} {curves['ap'][c]:.3f}")
    tag = f"mAP@{curves['iou_thr']:g}"
    ax.plot(curves["pr_recall"], curves["mean_pr_precision"], linewidth=3, color="blue",
            label=f"all classes {curves['map']:.3f} {tag}")
    _finish_axes(ax, "Recall", "Precision",
                 f"Precision-Recall curve ({_iou_name(task)} {curves['iou_thr']:g}, legend: AP)")
    return fig


def _f1_figure(curves: dict[str, Any], class_names: Sequence[str], task: str = "bbox") -> Any:
    fig = _new_figure((9, 6))
    ax = fig.add_subplot(1, 1, 1)
    _plot_class_curves(ax, curves["conf"], curves["f1"], curves, class_names, lambda c: str(class_names[c]))
    best_conf, best_f1 = curves["best_conf"], curves["best_f1"]
    ax.plot(curves["conf"], curves["mean_f1"], linewidth=3, color="blue",
            label=f"all classes {best_f1:.2f} at {best_conf:.3f}")
    ax.axvline(best_conf, color="red", linestyle="--", linewidth=1)
    ax.plot([best_conf], [best_f1], marker="o", color="red", label=f"best mean F1 (conf {best_conf:.3f})")
    _finish_axes(ax, "Confidence", "F1",
                 f"F1-Confidence curve ({_iou_name(task)} {curves['iou_thr']:g}): best mean F1 {best_f1:.3f} at conf "
                 f"{best_conf:.3f}")
    return fig


def _confusion_figure(matrix: np.ndarray, class_names: Sequence[str], normalize: bool, conf_thr: float,
                      iou_thr: float, task: str = "bbox") -> Any:
    names = [*map(str, class_names), "background"]
    n = len(names)
    values = normalize_confusion(matrix) if normalize else matrix.astype(np.float64)
    side = float(min(max(6.0, 0.3 * n + 3.0), 16.0))
    fig = _new_figure((side * 1.2, side))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(float(values.max()), 1.0))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fontsize = 10 if n <= 12 else max(5, round(10 - (n - 12) * 0.08))
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(names, rotation=90, fontsize=fontsize)
    ax.set_yticklabels(names, fontsize=fontsize)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    if n <= MAX_ANNOTATED_CELLS:
        vmax = values.max() if values.size else 0
        for i in range(n):
            for j in range(n):
                if matrix[i, j] == 0:
                    continue
                text = f"{values[i, j]:.2f}\n({matrix[i, j]})" if normalize else str(matrix[i, j])
                colour = "white" if vmax and values[i, j] > 0.6 * vmax else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=max(fontsize - 2, 4), color=colour)
    how = "rows (true class) normalised to 1" + (", counts in brackets" if n <= MAX_ANNOTATED_CELLS else "")
    ax.set_title(f"Confusion matrix\n{how if normalize else 'counts'}\nscore >= {conf_thr:g}, "
                 f"{_iou_name(task)} >= {iou_thr:g}", fontsize="medium")
    return fig


def write_plots(annotations: Sequence[Mapping[str, Any]], detections: Mapping[Any, Mapping[str, Any]],
                class_names: Sequence[str], out_dir: str | os.PathLike[str], *, conf_thr: float = 0.25,
                iou_thr: float = 0.5, cm_iou_thr: float = 0.45, normalize: bool = True, dpi: int = 150,
                return_figures: bool = True, task: str = "bbox") -> dict[str, Any]:
    """Write ``pr_curve.png``, ``confusion_matrix.png`` and ``f1_curve.png`` to ``out_dir`` (created if needed);
    for ``task="segm"`` (masks matched by mask IoU) ``segm_pr_curve.png`` … and the keys below get the same prefix.

    ``K = len(class_names)``. Curves use ``detection_curves(..., iou_thr)`` (0.5); the confusion matrix
    ``confusion_matrix(..., conf_thr, cm_iou_thr)`` (0.25, 0.45), drawn row-normalised per true class (each
    cell: fraction and, for up to 30 rows, the count) unless ``normalize=False`` (counts).

    Returns ``{"paths": {"pr_curve": Path, "confusion_matrix": Path, "f1_curve": Path}, "best_f1": float,
    "best_conf": float, "map50": float (mean AP at ``iou_thr``), "curves": detection_curves' dict,
    "confusion_matrix": (K+1, K+1) int64 counts, "figures": {"pr_curve": Figure, "confusion_matrix": Figure,
    "f1_curve": Figure}}``. The figures are Agg-backed ``matplotlib.figure.Figure`` objects, not registered with
    pyplot (ready for ``SummaryWriter.add_figure``; ``figure_to_rgb`` gives an RGB array); with
    ``return_figures=False`` the key is absent and they are freed.
    """
    class_names = [str(n) for n in class_names]
    num_classes = len(class_names)
    images = _prepare(annotations, detections, num_classes, task)
    curves = _curves(images, num_classes, iou_thr)
    counts = _confusion(images, num_classes, conf_thr, cm_iou_thr)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = TASK_PREFIX[task]
    figures = {
        f"{prefix}pr_curve": _pr_figure(curves, class_names, task),
        f"{prefix}confusion_matrix": _confusion_figure(counts, class_names, normalize, conf_thr, cm_iou_thr, task),
        f"{prefix}f1_curve": _f1_figure(curves, class_names, task),
    }
    paths: dict[str, Path] = {}
    for name, fig in figures.items():
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=dpi)
    report: dict[str, Any] = {
        "paths": paths,
        "best_f1": curves["best_f1"],
        "best_conf": curves["best_conf"],
        "map50": curves["map"],
        "curves": curves,
        "confusion_matrix": counts,
    }
    if return_figures:
        report["figures"] = figures
    return report
