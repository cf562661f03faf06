"""The ``faster_coco_eval`` backend of :class:`~framework.evaluation.coco.CocoEvaluator` (C++ matching and
accumulation, several times faster on large validation sets), made to give pycocotools' numbers bit for bit.

Its precision differs from pycocotools' in one place: pycocotools divides by ``tp + fp + np.spacing(1)``,
faster-coco-eval by ``tp + fp``, which gives 1.0 instead of ``1/(1+eps)`` (0.9999999999999998) where a curve's
precision comes from its first valid detection alone. ``accumulate_faster`` finds those entries (see
``_pycocotools_precision``) and restores pycocotools' value, and returns a pycocotools ``COCOeval`` holding the
result, so pycocotools' own ``summarize`` gives the 12 numbers (tests/evaluation/test_coco_backends.py, and
tests/evaluation/test_coco_segm.py for masks).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from framework.config.validation import ConfigError

FASTER_INSTALL_HINT = 'pip install faster-coco-eval (or pip install "framework[faster]")'

#: pycocotools' precision of a curve point with one valid detection, a true positive: 1/(1+eps).
_ONE_TP_PRECISION: float = 1.0 / (1.0 + np.spacing(1))


class EvaluationBackendNotInstalledError(ConfigError, ImportError):
    """The chosen evaluation backend's package is not installed.

    A ``ConfigError`` (the command line prints it without a traceback) and an ``ImportError``.
    """


def import_faster_coco_eval() -> tuple[Any, Any]:
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


def faster_index(faster_coco: Any, dataset: Mapping[str, Any]) -> Any:
    """A ``faster_coco_eval.COCO`` over `dataset` (a COCO dict, not copied: the same annotation dicts)."""
    index = faster_coco()
    index.dataset = dict(dataset)
    index.createIndex()
    return index


def faster_results(faster_coco: Any, gt_dataset: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                   task: str) -> Any:
    """Results as a ``faster_coco_eval.COCO``, with the fields its ``loadRes`` would add (``area``, ``id``,
    ``iscrowd``; for masks also ``bbox``). Built directly: ``loadRes`` would also add a polygon per box, which box
    evaluation never reads, and older versions crash on an empty list."""
    anns = []
    for i, r in enumerate(results, start=1):
        ann = {"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"], "id": i, "iscrowd": 0}
        if task == "segm":
            ann["segmentation"] = r["segmentation"]
            ann["area"] = float(mask_utils.area(r["segmentation"]))  # as loadRes: the mask's pixels
            ann["bbox"] = mask_utils.toBbox(r["segmentation"]).tolist()
        else:
            ann["bbox"] = list(r["bbox"])
            ann["area"] = r["bbox"][2] * r["bbox"][3]  # as loadRes: w * h
        anns.append(ann)
    return faster_index(faster_coco, {
        "info": copy.deepcopy(gt_dataset.get("info", {})),
        "images": list(gt_dataset.get("images", [])),
        "categories": copy.deepcopy(gt_dataset.get("categories", [])),
        "annotations": anns,
    })


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


def accumulate_faster(faster_eval: Any, faster_gt: Any, coco_dt: Any, coco_gt: COCO, task: str,
                      img_ids: list[int], cat_ids: list[int]) -> COCOeval:
    """Match and accumulate with faster_coco_eval (`faster_gt`, `coco_dt`: its COCO indexes; `task`: its
    ``iouType``); return a pycocotools ``COCOeval`` on `coco_gt` holding the result with pycocotools' exact
    precision, ready for pycocotools' ``summarize``."""
    ev = faster_eval(faster_gt, coco_dt, task, print_function=_discard)
    ev.params.imgIds = list(img_ids)
    ev.params.catIds = list(cat_ids)
    ref = COCOeval(iouType=task).params  # pycocotools' defaults, which summarize() assumes
    for name in ("iouThrs", "recThrs", "areaRng", "maxDets"):
        if not np.array_equal(np.asarray(getattr(ev.params, name)), np.asarray(getattr(ref, name))):
            raise RuntimeError(f"faster_coco_eval's default params.{name} differs from pycocotools'")

    # Extra recall thresholds that sample each curve at its second true positive (see
    # _pycocotools_precision): 2**-j is above 1/npig and at most 2/npig for 2**j < npig <= 2**(j+1),
    # both exactly (powers of two), so one threshold per power of two serves every curve. The C++
    # accumulation reads params.recThrs and finds each threshold on its own, so the extra columns
    # leave the first R untouched.
    npig = _valid_gt_counts(faster_gt, img_ids, cat_ids, ref.areaRng)
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

    result = COCOeval(coco_gt, coco_dt, task)
    result.params.imgIds = list(img_ids)
    result.params.catIds = list(cat_ids)
    result.eval = {
        "params": result.params,
        "counts": list(precision[:, :num_r].shape),
        "date": ev.eval.get("date", ""),
        "precision": _pycocotools_precision(precision[:, :num_r], second_tp, npig),
        "recall": np.asarray(ev.eval["recall"], dtype=np.float64).copy(),
        "scores": np.asarray(ev.eval["scores"], dtype=np.float64)[:, :num_r].copy(),
    }
    return result
