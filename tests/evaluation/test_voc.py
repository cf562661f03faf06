"""Tests for the Pascal VOC evaluator: hand-computed APs, the devkit's matching rules, and a
randomized cross-check against a plain-Python transcription of the devkit's ``voc_eval``."""

from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from framework.evaluation.coco import format_metrics_table
from framework.evaluation.voc import VOCEvaluator, pairwise_iou, voc_ap

EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------------------------------- helpers


def _ann(image_id: int, boxes: list[list[float]], labels: list[int], difficult: list[bool] | None = None) -> dict:
    return {
        "image_id": image_id,
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult if difficult is not None else [False] * len(labels), dtype=torch.bool),
    }


def _det(boxes: list[list[float]], scores: list[float], labels: list[int]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def _run(annotations: list[dict], class_names: list[str], dets: dict[int, dict], **kwargs: Any) -> VOCEvaluator:
    ev = VOCEvaluator(annotations, class_names, **kwargs)
    ev.process(list(dets), list(dets.values()))
    ev.evaluate()
    return ev


def _ap(annotations: list[dict], dets: dict[int, dict], interpolation: str, **kwargs: Any) -> float:
    ev = _run(annotations, ["a"], dets, interpolation=interpolation, **kwargs)
    return ev.per_class[0]["AP50"]


def _shift(box: list[float], dx: float) -> list[float]:
    return [box[0] + dx, box[1], box[2] + dx, box[3]]


# Three well-separated 10x10 ground-truth boxes.
A, B, C = [0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [40.0, 0.0, 50.0, 10.0]
MISS = [100.0, 100.0, 110.0, 110.0]  # overlaps nothing


# ------------------------------------------------------------------------- 1. known TP/FP sequence


def test_known_sequence_voc07_and_voc12() -> None:
    # 3 GT; detections by score: TP, FP, TP, FP, TP (detections are given out of order on purpose).
    #   cum TP 1 1 2 2 3, cum FP 0 1 1 2 2
    #   recall    1/3, 1/3, 2/3, 2/3, 1
    #   precision 1,   1/2, 2/3, 1/2, 3/5
    # voc07: t = 0, .1, .2, .3      -> max precision at recall >= t = 1    (4 points)
    #        t = .4, .5, .6         -> max(2/3, 1/2, 3/5) = 2/3            (3 points)
    #        t = .7, .8, .9, 1      -> 3/5                                 (4 points)
    #        AP = (4 + 3 * 2/3 + 4 * 3/5) / 11 = 8.4 / 11
    # voc12: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 3/5 on (2/3, 1]
    #        AP = (1 + 2/3 + 3/5) / 3 = 34/45
    ann = [_ann(1, [A, B, C], [0, 0, 0])]
    dets = {1: _det([MISS, C, A, _shift(MISS, 50), B], [0.8, 0.5, 0.9, 0.6, 0.7], [0, 0, 0, 0, 0])}
    ev07 = _run(ann, ["a"], dets, interpolation="voc07")
    ev12 = _run(ann, ["a"], dets, interpolation="voc12")
    assert ev07.per_class[0]["AP50"] == pytest.approx(8.4 / 11, abs=1e-12)
    assert ev12.per_class[0]["AP50"] == pytest.approx(34 / 45, abs=1e-12)
    assert ev07.evaluate() == {"voc_mAP": pytest.approx(8.4 / 11, abs=1e-12)}
    assert ev12.evaluate() == {"voc_mAP": pytest.approx(34 / 45, abs=1e-12)}
    row = ev12.per_class[0]
    assert (row["class"], row["num_gts"], row["num_dets"], row["recall"]) == ("a", 3, 5, 1.0)


def test_voc_ap_function() -> None:
    rec = np.array([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0])
    prec = np.array([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    assert voc_ap(rec, prec, "voc07") == pytest.approx(8.4 / 11, abs=1e-12)
    assert voc_ap(rec, prec, "voc12") == pytest.approx(34 / 45, abs=1e-12)
    assert voc_ap(np.zeros(0), np.zeros(0), "voc07") == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), "voc12") == 0.0
    # The 11 thresholds are np.arange(0, 1.1, 0.1), as in the Python devkit ports: the 4th is
    # 0.30000000000000004, so a recall of exactly 3/10 reaches only t = 0, .1, .2 -> 3/11 (not 4/11).
    assert voc_ap(np.array([3 / 10]), np.array([1.0]), "voc07") == pytest.approx(3 / 11, abs=1e-15)
    with pytest.raises(ValueError, match="interpolation"):
        voc_ap(rec, prec, "coco")


# ------------------------------------------------------------------------------------- 2. duplicates


def test_duplicate_detection_is_false_positive() -> None:
    # 2 GT (A, B). Scores: 0.9 on A (TP), 0.8 on A again (duplicate -> FP), 0.7 on B (TP).
    #   recall 1/2, 1/2, 1; precision 1, 1/2, 2/3
    #   voc12: 1/2 * 1 + 1/2 * 2/3 = 5/6        (1.0 if the duplicate were not an FP)
    #   voc07: t = 0..0.5 -> 1 (6 points), t = 0.6..1 -> 2/3 (5 points): (6 + 10/3) / 11 = 28/33
    ann = [_ann(1, [A, B], [0, 0])]
    dets = {1: _det([A, _shift(A, 0.5), B], [0.9, 0.8, 0.7], [0, 0, 0])}
    assert _ap(ann, dets, "voc12") == pytest.approx(5 / 6, abs=1e-12)
    assert _ap(ann, dets, "voc07") == pytest.approx(28 / 33, abs=1e-12)


def test_duplicate_is_not_passed_to_second_best_box() -> None:
    # Devkit rule: a detection takes the box with the highest IoU among *all* boxes of its class,
    # matched or not; if that box is taken, it is an FP even if another box would match.
    # GT A = [0,0,10,10], B2 = [2,0,12,10]. det1 = A (TP on A). det2 = [0.5,0,10.5,10]:
    #   IoU(det2, A) = 95/105 = 0.905 (taken), IoU(det2, B2) = 85/115 = 0.739 -> FP, B2 missed.
    #   recall 1/2, 1/2; precision 1, 1/2 -> voc12 AP = 1/2 (it would be 1 with "best unmatched").
    b2 = [2.0, 0.0, 12.0, 10.0]
    ann = [_ann(1, [A, b2], [0, 0])]
    dets = {1: _det([A, [0.5, 0.0, 10.5, 10.0]], [0.9, 0.8], [0, 0])}
    assert _ap(ann, dets, "voc12") == pytest.approx(0.5, abs=1e-12)


def test_iou_tie_goes_to_first_box() -> None:
    # GT G1 = [0,0,10,10], G2 = [2,0,12,10]. det T = [1,0,11,10] has IoU 90/110 with both (an exact tie):
    # the devkit takes the first box. Scores: T 0.9 -> G1 (TP), T 0.8 -> G1 again (FP), G2 exactly 0.7 -> TP.
    #   recall 1/2, 1/2, 1; precision 1, 1/2, 2/3 -> voc12 AP = 1/2 + 1/2 * 2/3 = 5/6.
    #   (Ties to the last box would give T -> G2 TP, T -> G2 FP, G2 -> G2 FP: AP 1/2.)
    g1, g2, tie = [0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0], [1.0, 0.0, 11.0, 10.0]
    iou = pairwise_iou(np.array([tie]), np.array([g1, g2]))
    assert iou[0, 0] == iou[0, 1] == 90 / 110
    ann = [_ann(1, [g1, g2], [0, 0])]
    dets = {1: _det([tie, tie, g2], [0.9, 0.8, 0.7], [0, 0, 0])}
    assert _ap(ann, dets, "voc12") == pytest.approx(5 / 6, abs=1e-12)


# -------------------------------------------------------------------------------------- 3. difficult


def test_difficult_match_is_ignored() -> None:
    # GT: A (normal), D = B (difficult). Detections: 0.95 on D, 0.9 on D again, 0.8 on A.
    # Both D detections are ignored (neither TP nor FP, even the repeat): cum TP 0 0 1, FP 0 0 0
    #   recall 0, 0, 1; precision 0, 0, 1 -> AP 1 for both interpolations.
    #   (Were the D detections FPs, the only TP would come at precision 1/3.)
    ann = [_ann(1, [A, B], [0, 0], [False, True])]
    dets = {1: _det([B, _shift(B, 0.5), A], [0.95, 0.9, 0.8], [0, 0, 0])}
    for interp in ("voc07", "voc12"):
        ev = _run(ann, ["a"], dets, interpolation=interp)
        assert ev.per_class[0]["AP50"] == pytest.approx(1.0, abs=1e-12)
        assert ev.per_class[0]["num_gts"] == 1  # difficult boxes are not counted
        assert ev.per_class[0]["recall"] == 1.0


def test_unmatched_difficult_is_not_a_miss() -> None:
    # GT A (normal), D (difficult); only A is detected -> recall 1/1, AP 1 (1/2 if D were a miss).
    ann = [_ann(1, [A, B], [0, 0], [False, True])]
    dets = {1: _det([A], [0.9], [0])}
    assert _ap(ann, dets, "voc12") == pytest.approx(1.0, abs=1e-12)
    assert _ap(ann, dets, "voc07") == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------ 4. IoU threshold


def test_iou_threshold_boundary() -> None:
    # GT A = [0,0,10,10] (area 100). det [0,0,10,20]: IoU = 100 / 200 = 0.5 exactly.
    # The official devkit (VOCevaldet.m) matches when ovmax >= minoverlap, so 0.5 counts: AP 1.
    # (py-faster-rcnn/detectron2's voc_eval.py uses ">", which would make it an FP.)
    on_boundary = [0.0, 0.0, 10.0, 20.0]
    assert float(pairwise_iou(np.array([on_boundary]), np.array([A]))[0, 0]) == 0.5
    ann = [_ann(1, [A], [0])]
    assert _ap(ann, {1: _det([on_boundary], [0.9], [0])}, "voc12") == 1.0
    # Just below: [0,0,10,20.5] -> 100 / 205 < 0.5 -> FP, AP 0.
    assert _ap(ann, {1: _det([[0.0, 0.0, 10.0, 20.5]], [0.9], [0])}, "voc12") == 0.0
    # iou_thr is configurable: at 0.75 the boundary box misses; [0,0,10,13] (IoU 1/1.3 = 0.769) hits.
    assert _ap(ann, {1: _det([on_boundary], [0.9], [0])}, "voc12", iou_thr=0.75) == 0.0
    assert _ap(ann, {1: _det([[0.0, 0.0, 10.0, 13.0]], [0.9], [0])}, "voc12", iou_thr=0.75) == 1.0


def test_wrong_class_does_not_match() -> None:
    # A detection of class 1 exactly on a class-0 box is an FP for class 1 and no TP for class 0.
    ann = [_ann(1, [A, B], [0, 1])]
    ev = _run(ann, ["a", "b"], {1: _det([A], [0.9], [1])}, interpolation="voc12")
    assert [r["AP50"] for r in ev.per_class] == [0.0, 0.0]


# ------------------------------------------------------------------------------ 5. multi-class mAP


def test_multiclass_map_excludes_classes_without_gt() -> None:
    names = ["cat", "dog", "bird", "cow", "horse"]
    # cat:   1 GT, detected              -> AP 1
    # dog:   2 GT (two images), only one detected (top score), plus a lower FP:
    #        recall 1/2, 1/2; precision 1, 1/2 -> voc12 1/2; voc07 t = 0..0.5 -> 6/11
    # bird:  only a difficult GT (detected) -> no GT -> NaN, not in the mean
    # cow:   no GT at all, one detection -> NaN, not in the mean
    # horse: 1 GT, no detection         -> AP 0, in the mean
    ann = [
        _ann(1, [A, B, C], [0, 1, 2], [False, False, True]),
        _ann(2, [A, B], [1, 4]),
        _ann(3, [], []),  # an image with no objects
    ]
    dets = {
        1: _det([A, B, C, MISS], [0.9, 0.8, 0.7, 0.6], [0, 1, 2, 3]),
        2: _det([MISS], [0.5], [1]),
        3: _det([], [], []),
    }
    ev12 = _run(ann, names, dets, interpolation="voc12")
    ev07 = _run(ann, names, dets, interpolation="voc07")
    aps12 = [r["AP50"] for r in ev12.per_class]
    assert aps12[:2] == [pytest.approx(1.0), pytest.approx(0.5)]
    assert math.isnan(aps12[2]) and math.isnan(aps12[3]) and aps12[4] == 0.0
    assert ev12.evaluate()["voc_mAP"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-12)
    assert ev07.evaluate()["voc_mAP"] == pytest.approx((1 + 6 / 11 + 0) / 3, abs=1e-12)
    assert [r["num_gts"] for r in ev12.per_class] == [1, 2, 0, 0, 1]
    assert [r["num_dets"] for r in ev12.per_class] == [1, 2, 1, 1, 0]
    # The report shows every class and the mean.
    table = ev12.format_per_class()
    for name in names:
        assert name in table
    assert "mAP" in table and "0.500" in table and "nan" in table
    assert "mAP = 0.500" in ev12.summary and "3/5 classes" in ev12.summary


def test_empty_cases() -> None:
    # No annotations at all: nothing has GT -> NaN mAP.
    ev = VOCEvaluator([], ["a"])
    assert math.isnan(ev.evaluate()["voc_mAP"])
    # GT but nothing processed: every image is evaluated with no detections -> 0 (as COCO does).
    ann = [_ann(1, [A], [0]), _ann(2, [], [])]
    ev = VOCEvaluator(ann, ["a", "b"], interpolation="voc12")
    assert ev.evaluate() == {"voc_mAP": 0.0}
    assert ev.per_class[0]["num_gts"] == 1 and ev.per_class[0]["recall"] == 0.0
    # Processed images with empty detections; images without GT.
    ev.reset()
    ev.process([1, 2], [_det([], [], []), _det([], [], [])])
    assert ev.evaluate() == {"voc_mAP": 0.0}
    # Only the image without GT processed: no class has GT there.
    ev.reset()
    ev.process([2], [_det([A], [0.9], [0])])
    assert math.isnan(ev.evaluate()["voc_mAP"])
    assert ev.per_class[0]["num_dets"] == 1
    # Missing "difficult" means none are difficult; numpy / list inputs are accepted.
    ev = VOCEvaluator([{"image_id": 5, "boxes": np.array([A]), "labels": [0]}], ["a"])
    ev.process([5], [{"boxes": np.array([A]), "scores": np.array([0.3]), "labels": np.array([0])}])
    assert ev.evaluate() == {"voc_mAP": 1.0}


# ------------------------------------------------------------------- 6. repeated image ids


def test_repeated_image_counted_once_and_unknown_ids() -> None:
    ann = [_ann(1, [A], [0]), _ann(2, [B], [0])]
    ev = VOCEvaluator(ann, ["a"], interpolation="voc12")
    ev.process([1], [_det([A], [0.9], [0])])
    # A distributed sampler pads by repeating image 1; the repeat (here with an FP on top) is ignored.
    with pytest.warns(UserWarning, match="processed twice"):
        ev.process([2, 1], [_det([B], [0.8], [0]), _det([MISS], [0.99], [0])])
    assert ev.image_ids == [1, 2]
    assert ev.evaluate() == {"voc_mAP": 1.0}
    assert ev.per_class[0]["num_dets"] == 2
    with pytest.raises(ValueError, match="not in the ground-truth"):
        ev.process([3], [_det([A], [0.9], [0])])
    # Only processed images are evaluated: image 2 unprocessed -> its GT is not a miss.
    ev.reset()
    assert ev.image_ids == [] and ev.per_class == [] and ev.summary == ""
    ev.process([1], [_det([A], [0.9], [0])])
    assert ev.evaluate() == {"voc_mAP": 1.0}
    assert ev.per_class[0]["num_gts"] == 1


def test_result_independent_of_processing_order() -> None:
    # Equal scores in different images: ties are broken by image id, not by processing order.
    ann = [_ann(1, [A], [0]), _ann(2, [A], [0])]
    d1, d2 = _det([A, MISS], [0.5, 0.5], [0, 0]), _det([MISS, A], [0.5, 0.7], [0, 0])
    forward = _run(ann, ["a"], {1: d1, 2: d2}, interpolation="voc12").per_class[0]["AP50"]
    backward = _run(ann, ["a"], {2: d2, 1: d1}, interpolation="voc12").per_class[0]["AP50"]
    assert forward == backward


def test_validation_errors() -> None:
    ann = [_ann(1, [A], [0])]
    with pytest.raises(ValueError, match="interpolation"):
        VOCEvaluator(ann, ["a"], interpolation="coco")
    with pytest.raises(ValueError, match="iou_thr"):
        VOCEvaluator(ann, ["a"], iou_thr=0.0)
    with pytest.raises(ValueError, match="class_names"):
        VOCEvaluator(ann, [])
    with pytest.raises(ValueError, match="twice"):
        VOCEvaluator(ann + ann, ["a"])
    with pytest.raises(ValueError, match="labels must be in"):
        VOCEvaluator([_ann(1, [A], [1])], ["a"])
    ev = VOCEvaluator(ann, ["a"])
    with pytest.raises(ValueError, match="image ids but"):
        ev.process([1, 1], [_det([A], [0.9], [0])])
    with pytest.raises(ValueError, match="labels must be in"):
        ev.process([1], [_det([A], [0.9], [3])])
    with pytest.raises(ValueError, match="1 boxes, 2 scores"):
        ev.process([1], [{"boxes": torch.tensor([A]), "scores": torch.tensor([0.9, 0.1]), "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match="NaN"):
        ev.process([1], [_det([A], [float("nan")], [0])])
    assert ev.image_ids == []  # rejected images are not marked as seen


# ------------------------------------------------------------------------ output / API surface


def test_api_results_and_outputs(tmp_path: Path) -> None:
    assert VOCEvaluator.primary_metric == "voc_mAP"
    ann = [_ann(7, [A, B], [0, 1]), _ann(3, [C], [1])]
    ev = VOCEvaluator(ann, ["cat", "dog"], interpolation="voc07")
    assert ev.format_per_class().startswith("(no per-class results")
    ev.process([7, 3], [_det([[1.0, 2.0, 11.0, 14.0], B], [0.9, 0.25], [0, 1]), _det([], [], [])])
    metrics = ev.evaluate()
    assert list(metrics) == ["voc_mAP"] and ev.class_names == ["cat", "dog"]
    assert set(ev.per_class[0]) == {"class", "AP50", "num_gts", "num_dets", "recall"}
    expected = [
        {"image_id": 7, "category_id": 1, "bbox": [1.0, 2.0, 10.0, 12.0], "score": pytest.approx(0.9)},
        {"image_id": 7, "category_id": 2, "bbox": [20.0, 0.0, 10.0, 10.0], "score": pytest.approx(0.25)},
    ]
    assert ev.results == expected
    ev.results[0]["bbox"][0] = -5  # a copy: the evaluator keeps its own
    assert ev.results == expected
    out = ev.write_results(tmp_path / "sub" / "results.bbox.json")
    assert json.loads(out.read_text()) == expected
    assert not list(out.parent.glob("*.tmp"))
    table = format_metrics_table(metrics)
    assert "voc_mAP" in table and f"{metrics['voc_mAP']:.3f}" in table
    json.dumps({"bbox": metrics, "per_class": ev.per_class}, allow_nan=True)  # what the runner writes


def test_pairwise_iou_is_torchvision_box_iou() -> None:
    # Same float operations as torchvision's box_iou, so the same bits; zero-area pairs give 0, not NaN.
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g, dtype=torch.float64) * 100
    boxes = torch.cat([xy, xy + torch.rand(300, 2, generator=g, dtype=torch.float64) * 50], dim=1)
    a, b = boxes[:120], boxes[120:]
    assert (box_iou(a, b) > 0).sum() > 1000
    assert np.array_equal(pairwise_iou(a.numpy(), b.numpy()), box_iou(a, b).numpy())
    assert pairwise_iou(np.zeros((0, 4)), b.numpy()).shape == (0, 180)
    point = np.array([[5.0, 5.0, 5.0, 5.0]])
    assert pairwise_iou(point, point).tolist() == [[0.0]]


# ------------------------------------------------------------------- 7. the +1 pixel convention


def _legacy_iou(bb: list[float], gt: list[float]) -> float:
    """The devkit's overlap on 1-based inclusive boxes: widths are xmax - xmin + 1."""
    iw = min(bb[2], gt[2]) - max(bb[0], gt[0]) + 1
    ih = min(bb[3], gt[3]) - max(bb[1], gt[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1) - iw * ih
    return iw * ih / ua


def _to_continuous(box: list[float]) -> list[float]:
    """What the VOC loader does with an XML box: x0 = xmin - 1, x1 = xmax (same for y)."""
    return [box[0] - 1, box[1] - 1, box[2], box[3]]


def _random_voc_box(rng: random.Random) -> list[float]:
    xmin, ymin = rng.randint(1, 60), rng.randint(1, 60)
    return [float(xmin), float(ymin), float(xmin + rng.randint(0, 30)), float(ymin + rng.randint(0, 30))]


def test_plus_one_convention_equivalence() -> None:
    # Hand example: VOC box (1,1,10,10) is 10x10 pixels; (6,1,15,10) overlaps it on columns 6..10.
    #   legacy: inter 5*10 = 50, union 100 + 100 - 50 = 150 -> 1/3
    #   converted (0,0,10,10) and (5,0,15,10): inter 5*10 = 50, union 150 -> 1/3, with no +1.
    #   (No +1 on the unconverted boxes would give 36 / 126 = 0.2857.)
    gt, det = [1.0, 1.0, 10.0, 10.0], [6.0, 1.0, 15.0, 10.0]
    assert _legacy_iou(det, gt) == 1 / 3
    assert float(pairwise_iou(np.array([_to_continuous(det)]), np.array([_to_continuous(gt)]))[0, 0]) == 1 / 3

    # Exact equality on many random integer VOC boxes (1-pixel-wide ones included).
    rng = random.Random(0)
    dets = [_random_voc_box(rng) for _ in range(200)]
    gts = [_random_voc_box(rng) for _ in range(150)]
    ours = pairwise_iou(np.array([_to_continuous(b) for b in dets]), np.array([_to_continuous(b) for b in gts]))
    legacy = np.array([[_legacy_iou(d, g) for g in gts] for d in dets])
    assert (ours > 0).sum() > 1000  # plenty of overlapping pairs
    assert np.array_equal(ours, legacy)

    # And whole evaluations agree exactly: the legacy devkit on 1-based boxes vs ours on converted boxes
    # (integer boxes hit IoU == 0.5 exactly now and then, so this also exercises the boundary).
    case = _random_case(seed=11, integer_boxes=True)
    for interp in ("voc07", "voc12"):
        legacy_aps, legacy_map = _reference_eval(case, interp, 0.5, iou_fn=_legacy_iou)
        converted = _convert_case(case)
        ev = _evaluate_case(converted, interp, 0.5)
        metrics = ev.evaluate()
        assert _same(legacy_aps, [r["AP50"] for r in ev.per_class])
        assert _same([legacy_map], [metrics["voc_mAP"]])


def _convert_case(case: dict[str, Any]) -> dict[str, Any]:
    out = dict(case)
    out["gts"] = {i: [(_to_continuous(b), l, d) for b, l, d in objs] for i, objs in case["gts"].items()}
    out["dets"] = {i: [(_to_continuous(b), s, l) for b, s, l in ds] for i, ds in case["dets"].items()}
    return out


# -------------------------------------------------- 8. randomized cross-check against the devkit logic


def _iou(a: list[float], b: list[float]) -> float:
    """Continuous-pixel IoU in plain Python (the same float operations as torchvision's box_iou)."""
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference_ap(rec: list[float], prec: list[float], interpolation: str) -> float:
    """The devkit's voc_ap, written with loops."""
    if interpolation == "voc07":
        ap = 0.0
        for k in range(11):
            t = k * 0.1  # the values np.arange(0.0, 1.1, 0.1) holds
            p = 0.0
            for r, q in zip(rec, prec):
                if r >= t and q > p:
                    p = q
            ap += p / 11.0
        return ap
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(len(mrec) - 1):
        if mrec[i + 1] != mrec[i]:
            ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1]
    return ap


def _reference_eval(
    case: dict[str, Any], interpolation: str, iou_thr: float, iou_fn: Any = _iou
) -> tuple[list[float], float]:
    """A straight transcription of the devkit's per-class evaluation (VOCevaldet / voc_eval).

    Images are the processed ones; detections are concatenated by ascending image id and ranked
    with Python's stable sort, which is the tie order the evaluator documents.
    """
    images = sorted(case["processed"])
    aps = []
    for c in range(case["num_classes"]):
        gt: dict[int, dict[str, list]] = {}
        npos = 0
        for img in images:
            objs = [(b, d) for b, lab, d in case["gts"][img] if lab == c]
            gt[img] = {"bbox": [b for b, _ in objs], "difficult": [d for _, d in objs], "det": [False] * len(objs)}
            npos += sum(1 for _, d in objs if not d)
        dets = [(img, b, s) for img in images for b, s, lab in case["dets"].get(img, []) if lab == c]
        dets = sorted(dets, key=lambda x: -x[2])
        tp, fp = [], []
        for img, bb, _ in dets:
            r = gt[img]
            ovmax, jmax = -math.inf, -1
            for j, g in enumerate(r["bbox"]):
                ov = iou_fn(bb, g)
                if ov > ovmax:
                    ovmax, jmax = ov, j
            t = f = 0
            if ovmax >= iou_thr:
                if not r["difficult"][jmax]:
                    if not r["det"][jmax]:
                        t = 1
                        r["det"][jmax] = True
                    else:
                        f = 1  # duplicate
            else:
                f = 1
            tp.append(t)
            fp.append(f)
        if npos == 0:
            aps.append(math.nan)
            continue
        rec, prec, ctp, cfp = [], [], 0, 0
        for t, f in zip(tp, fp):
            ctp += t
            cfp += f
            rec.append(ctp / npos)
            prec.append(ctp / max(ctp + cfp, EPS))
        aps.append(_reference_ap(rec, prec, interpolation))
    valid = [a for a in aps if not math.isnan(a)]
    return aps, (sum(valid) / len(valid) if valid else math.nan)


def _random_case(seed: int, num_images: int = 50, num_classes: int = 5, integer_boxes: bool = False) -> dict[str, Any]:
    """Random GT (some difficult, some images empty, the last class never annotated) and detections:
    jittered copies of GT boxes (so IoU lands on both sides of the threshold), duplicates, wrong
    classes, pure false positives, and scores on a coarse grid so that ties are common."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1, 4 * num_images))[:num_images].tolist()  # sparse, unsorted ids

    def box() -> list[float]:
        if integer_boxes:  # VOC's 1-based inclusive pixels: xmax >= xmin
            x, y = (int(v) for v in rng.integers(1, 81, 2))
            w, h = (int(v) for v in rng.integers(0, 40, 2))
            return [float(x), float(y), float(x + w), float(y + h)]
        x, y = rng.uniform(0, 80, 2)
        w, h = rng.uniform(2, 40, 2)
        return [float(x), float(y), float(x + w), float(y + h)]

    gts, dets = {}, {}
    for img in ids:
        n = int(rng.integers(0, 7))
        objs = [(box(), int(rng.integers(0, num_classes - 1)), bool(rng.random() < 0.2)) for _ in range(n)]
        gts[img] = objs
        ds = []
        for b, lab, _ in objs:
            for _ in range(int(rng.integers(0, 3))):  # 0, 1 or 2 detections per object
                jitter = rng.normal(0, 3.0, 4)
                jb = [v + float(j) for v, j in zip(b, jitter)]
                if integer_boxes:
                    jb = [float(round(v)) for v in jb]
                jb = [min(jb[0], jb[2]), min(jb[1], jb[3]), max(jb[0], jb[2]), max(jb[1], jb[3])]
                det_label = lab if rng.random() < 0.85 else int(rng.integers(0, num_classes))
                ds.append((jb, float(rng.integers(0, 11)) / 10, det_label))
        for _ in range(int(rng.integers(0, 4))):
            ds.append((box(), float(rng.integers(0, 11)) / 10, int(rng.integers(0, num_classes))))
        order = rng.permutation(len(ds)).tolist()
        dets[img] = [ds[i] for i in order]
    processed = [img for img in ids if rng.random() < 0.9]  # a few images never evaluated
    return {"num_classes": num_classes, "gts": gts, "dets": dets, "processed": processed}


def _evaluate_case(case: dict[str, Any], interpolation: str, iou_thr: float) -> VOCEvaluator:
    ann = [
        {
            "image_id": img,
            "boxes": np.array([b for b, _, _ in objs], dtype=np.float64).reshape(-1, 4),
            "labels": np.array([lab for _, lab, _ in objs], dtype=np.int64),
            "difficult": np.array([d for _, _, d in objs], dtype=bool),
        }
        for img, objs in case["gts"].items()
    ]
    names = [f"class{c}" for c in range(case["num_classes"])]
    ev = VOCEvaluator(ann, names, interpolation=interpolation, iou_thr=iou_thr)

    def det(img: int) -> dict[str, torch.Tensor]:
        ds = case["dets"][img]
        return {
            "boxes": torch.tensor([b for b, _, _ in ds], dtype=torch.float64).reshape(-1, 4),
            "scores": torch.tensor([s for _, s, _ in ds], dtype=torch.float64),
            "labels": torch.tensor([lab for _, _, lab in ds], dtype=torch.int64),
        }

    # Shuffled batches of 1..6 images, plus padding repeats (which must be ignored).
    processed = list(case["processed"])
    random.Random(len(processed)).shuffle(processed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        i = 0
        while i < len(processed):
            batch = processed[i : i + 1 + i % 6]
            ev.process(batch, [det(img) for img in batch])
            i += len(batch)
        if processed:
            ev.process(processed[:2], [det(img) for img in processed[:2]])
    return ev


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-12 for x, y in zip(a, b)
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("interpolation", ["voc07", "voc12"])
@pytest.mark.parametrize("iou_thr", [0.5, 0.7])
def test_random_cross_check(seed: int, interpolation: str, iou_thr: float) -> None:
    case = _random_case(seed)
    ref_aps, ref_map = _reference_eval(case, interpolation, iou_thr)
    ev = _evaluate_case(case, interpolation, iou_thr)
    metrics = ev.evaluate()
    ours = [r["AP50"] for r in ev.per_class]
    assert _same(ref_aps, ours), (ref_aps, ours)
    assert _same([ref_map], [metrics["voc_mAP"]])
    assert math.isnan(ours[-1])  # the last class is never annotated
    assert any(0.0 < a < 1.0 for a in ours[:-1])  # the case is not degenerate
