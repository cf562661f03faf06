"""Tests for the COCO evaluator: its numbers must be pycocotools' own."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from framework.evaluation.coco import COCO_METRIC_NAMES, CocoEvaluator, format_metrics_table

# Non-contiguous category ids, as in real COCO; labels 0, 1, 2 map to 1, 5, 7.
LABEL_TO_CAT = [1, 5, 7]
CAT_TO_LABEL = {c: i for i, c in enumerate(LABEL_TO_CAT)}


def _gt_dataset() -> dict[str, Any]:
    """Three images; small (<32²), medium and large objects; one crowd region."""
    anns = [
        # image 1: small cat, medium dog, crowd cat
        (1, 1, [10, 10, 20, 20], 0),
        (1, 5, [50, 50, 60, 60], 0),
        (1, 1, [100, 100, 80, 80], 1),
        # image 2: large dog, medium bird
        (2, 5, [0, 0, 150, 150], 0),
        (2, 7, [200, 200, 30, 40], 0),
        # image 3: medium cat, small bird
        (3, 1, [5, 5, 40, 40], 0),
        (3, 7, [60, 60, 10, 10], 0),
    ]
    return {
        "info": {"description": "tiny test set"},
        "images": [
            {"id": 1, "file_name": "1.jpg", "width": 200, "height": 200},
            {"id": 2, "file_name": "2.jpg", "width": 300, "height": 300},
            {"id": 3, "file_name": "3.jpg", "width": 100, "height": 100},
        ],
        "categories": [
            {"id": 1, "name": "cat"},
            {"id": 5, "name": "dog"},
            {"id": 7, "name": "bird"},
        ],
        "annotations": [
            {
                "id": i + 1,
                "image_id": img,
                "category_id": cat,
                "bbox": [float(v) for v in box],
                "area": float(box[2] * box[3]),
                "iscrowd": crowd,
            }
            for i, (img, cat, box, crowd) in enumerate(anns)
        ],
    }


def _make_gt() -> COCO:
    coco = COCO()
    coco.dataset = _gt_dataset()
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@pytest.fixture()
def coco_gt() -> COCO:
    return _make_gt()


def _xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _perfect(coco: COCO, img_id: int) -> dict[str, torch.Tensor]:
    """Non-crowd GT boxes of one image as detections with score 1."""
    anns = [a for a in coco.imgToAnns[img_id] if not a["iscrowd"]]
    return {
        "boxes": torch.tensor([_xyxy(a["bbox"]) for a in anns], dtype=torch.float32).reshape(-1, 4),
        "scores": torch.ones(len(anns)),
        "labels": torch.tensor([CAT_TO_LABEL[a["category_id"]] for a in anns], dtype=torch.int64),
    }


def _empty() -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}


def _noisy(coco: COCO, img_id: int, seed: int) -> dict[str, torch.Tensor]:
    """Jittered GT boxes plus false positives, with spread-out scores: a non-trivial PR curve."""
    g = torch.Generator().manual_seed(seed)
    det = _perfect(coco, img_id)
    boxes = det["boxes"].double() + torch.randn(det["boxes"].shape, generator=g, dtype=torch.float64) * 3.0
    fp_xy = torch.rand(4, 2, generator=g, dtype=torch.float64) * 80
    fp = torch.cat([fp_xy, fp_xy + 5 + torch.rand(4, 2, generator=g, dtype=torch.float64) * 40], dim=1)
    return {
        "boxes": torch.cat([boxes, fp]),
        "scores": torch.rand(len(boxes) + 4, generator=g, dtype=torch.float64),
        "labels": torch.cat([det["labels"], torch.randint(0, 3, (4,), generator=g)]),
    }


def _direct_stats(coco: COCO, dets: dict[int, dict[str, torch.Tensor]], img_ids: list[int]) -> list[float]:
    """Independent pycocotools run on the same detections, converted here without the evaluator."""
    results = []
    for img_id, det in dets.items():
        for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append(
                {
                    "image_id": img_id,
                    "category_id": LABEL_TO_CAT[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    gt = _make_gt()
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats]


def test_metric_names() -> None:
    assert len(COCO_METRIC_NAMES) == 12
    assert COCO_METRIC_NAMES[0] == "bbox/mAP" and COCO_METRIC_NAMES[-1] == "bbox/AR_l"


def test_perfect_detections_give_map_one(coco_gt: COCO, capsys: pytest.CaptureFixture[str]) -> None:
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    ev.process([1, 2], [_perfect(coco_gt, 1), _perfect(coco_gt, 2)])
    ev.process([3], [_perfect(coco_gt, 3)])
    metrics = ev.evaluate()
    assert list(metrics) == list(COCO_METRIC_NAMES)
    assert metrics["bbox/mAP"] == 1.0
    for name, value in metrics.items():
        assert value == pytest.approx(1.0), name
    assert capsys.readouterr().out == ""  # pycocotools' prints are captured, not leaked
    assert "Average Precision" in ev.summary and len(ev.summary.splitlines()) == 12
    assert [r["AP"] for r in ev.per_class] == pytest.approx([1.0, 1.0, 1.0])


def test_empty_evaluator_gives_zero(coco_gt: COCO) -> None:
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    metrics = ev.evaluate()  # nothing processed at all
    assert metrics["bbox/mAP"] == 0.0 and metrics["bbox/AR_100"] == 0.0

    ev.reset()
    ev.process([1, 2, 3], [_empty(), _empty(), _empty()])  # processed, but no detections
    metrics = ev.evaluate()
    assert metrics["bbox/mAP"] == 0.0
    assert all(v == 0.0 for v in metrics.values())
    assert ev.results == []
    assert [r["AP"] for r in ev.per_class] == [0.0, 0.0, 0.0]


def test_numbers_equal_direct_pycocotools(coco_gt: COCO) -> None:
    dets = {img_id: _noisy(coco_gt, img_id, seed=img_id) for img_id in (1, 2, 3)}
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    for img_id, det in dets.items():
        ev.process([img_id], [det])
    metrics = ev.evaluate()
    expected = _direct_stats(coco_gt, dets, [1, 2, 3])
    assert [metrics[n] for n in COCO_METRIC_NAMES] == expected  # exact, not approx
    assert 0.0 < metrics["bbox/mAP"] < 1.0  # the case is not degenerate


def test_full_float_precision_kept(coco_gt: COCO) -> None:
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    box = [10.123456789, 20.987654321, 55.5555555, 70.0000001]
    ev.process([1], [{"boxes": torch.tensor([box], dtype=torch.float64), "scores": torch.tensor([0.123456789]),
                      "labels": torch.tensor([2])}])
    (res,) = ev.results
    assert res["image_id"] == 1 and res["category_id"] == 7
    assert res["bbox"] == [box[0], box[1], box[2] - box[0], box[3] - box[1]]
    assert all(type(v) is float for v in res["bbox"]) and type(res["score"]) is float
    assert res["score"] == float(torch.tensor([0.123456789])[0])


def test_labels_map_to_category_ids(coco_gt: COCO) -> None:
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    ev.process([2], [_perfect(coco_gt, 2)])
    assert sorted((r["category_id"], r["bbox"][2]) for r in ev.results) == [(5, 150.0), (7, 30.0)]

    first = ev.evaluate()
    assert first["bbox/mAP"] == pytest.approx(1.0)
    assert ev.evaluate() == first  # evaluating twice gives the same answer

    # One detection with the wrong label (bird labelled dog) lowers the score.
    wrong = _perfect(coco_gt, 2)
    wrong["labels"] = torch.tensor([CAT_TO_LABEL[5], CAT_TO_LABEL[5]])
    ev.reset()
    ev.process([2], [wrong])
    metrics = ev.evaluate()
    assert metrics["bbox/mAP"] < 1.0
    by_class = {r["class"]: r["AP"] for r in ev.per_class}
    assert by_class["bird"] == 0.0 and by_class["dog"] == pytest.approx(1.0)


def test_write_results_loads_with_loadres(coco_gt: COCO, tmp_path: Path) -> None:
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    dets = {i: _noisy(coco_gt, i, seed=10 + i) for i in (1, 2, 3)}
    ev.process(list(dets), list(dets.values()))
    path = ev.write_results(tmp_path / "nested" / "dir" / "bbox_results.json")
    assert path.is_file()
    loaded = json.loads(path.read_text())
    assert isinstance(loaded, list) and loaded == ev.results
    with contextlib.redirect_stdout(io.StringIO()):
        dt = _make_gt().loadRes(str(path))
    assert len(dt.getAnnIds()) == len(ev.results)
    # loadRes mutates what it gets; the evaluator's own copy must stay in results format.
    assert set(ev.results[0]) == {"image_id", "category_id", "bbox", "score"}


def test_subset_of_images(coco_gt: COCO) -> None:
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    ev.process([1, 2], [_perfect(coco_gt, 1), _perfect(coco_gt, 2)])
    assert ev.image_ids == [1, 2]
    metrics = ev.evaluate()
    assert metrics["bbox/mAP"] == pytest.approx(1.0)  # image 3's objects are not counted as misses
    assert ev.coco_eval is not None and ev.coco_eval.params.imgIds == [1, 2]

    # Noisy subset: exactly what pycocotools gives with imgIds restricted the same way.
    dets = {3: _noisy(coco_gt, 3, seed=3), 1: _noisy(coco_gt, 1, seed=1)}
    ev.reset()
    for img_id, det in dets.items():
        ev.process([img_id], [det])
    metrics = ev.evaluate()
    assert [metrics[n] for n in COCO_METRIC_NAMES] == _direct_stats(coco_gt, dets, [1, 3])
    assert metrics != {n: v for n, v in zip(COCO_METRIC_NAMES, _direct_stats(coco_gt, dets, [1, 2, 3]))}

    # Image 1 holds no bird: its per-class AP has no valid entries and reads NaN.
    ev.reset()
    ev.process([1], [_perfect(coco_gt, 1)])
    ev.evaluate()
    by_class = {r["class"]: r for r in ev.per_class}
    # One match per class: pycocotools gives 1/(1+eps), not exactly 1.
    assert by_class["cat"]["AP"] == pytest.approx(1.0) and by_class["dog"]["AP50"] == pytest.approx(1.0)
    assert math.isnan(by_class["bird"]["AP"]) and math.isnan(by_class["bird"]["AP75"])
    assert "nan" in ev.format_per_class()


def test_per_class_table(coco_gt: COCO) -> None:
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    dets = {i: _noisy(coco_gt, i, seed=20 + i) for i in (1, 2, 3)}
    ev.process(list(dets), list(dets.values()))
    ev.evaluate()
    assert [r["class"] for r in ev.per_class] == ["cat", "dog", "bird"]  # names from the GT, label order
    assert all(set(r) == {"class", "AP", "AP50", "AP75"} for r in ev.per_class)
    # Per-class AP averages to pycocotools' mAP when every class has ground truth.
    mean_ap = sum(r["AP"] for r in ev.per_class) / 3
    assert mean_ap == pytest.approx(ev.coco_eval.stats[0])
    table = ev.format_per_class().splitlines()
    assert len(table) == 2 + 3
    assert len({len(line) for line in table}) == 1  # aligned columns

    named = CocoEvaluator(coco_gt, LABEL_TO_CAT, class_names=["a", "b", "c"])
    named.process([1], [_perfect(coco_gt, 1)])
    named.evaluate()
    assert [r["class"] for r in named.per_class] == ["a", "b", "c"]


def test_format_metrics_table() -> None:
    metrics = {n: i / 10 for i, n in enumerate(COCO_METRIC_NAMES)}
    lines = format_metrics_table(metrics).splitlines()
    assert len(lines) == 2 + 12
    assert lines[2].split() == ["bbox/mAP", "0.000"]
    assert lines[-1].split() == ["bbox/AR_l", "1.100"]


def test_gt_from_path_loads_quietly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(_gt_dataset()))
    ev = CocoEvaluator(str(ann_file), LABEL_TO_CAT)
    ev.process([3], [_perfect(_make_gt(), 3)])
    assert ev.evaluate()["bbox/mAP"] == pytest.approx(1.0)  # one match per class: 1/(1+eps)
    assert capsys.readouterr().out == ""


def test_invalid_inputs(coco_gt: COCO) -> None:
    with pytest.raises(ValueError, match="not in the ground truth"):
        CocoEvaluator(coco_gt, [1, 2, 7])
    with pytest.raises(ValueError, match="class names"):
        CocoEvaluator(coco_gt, LABEL_TO_CAT, class_names=["cat"])
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    bad = _perfect(coco_gt, 1)
    bad["labels"] = torch.tensor([0, 3])
    with pytest.raises(ValueError, match="labels must be in"):
        ev.process([1], [bad])
    with pytest.raises(ValueError, match="not in the ground-truth"):
        ev.process([99], [_empty()])
    with pytest.raises(ValueError, match="image ids but"):
        ev.process([1, 2], [_empty()])


def test_repeated_image_is_counted_once(coco_gt: COCO) -> None:
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    ev.process([1], [_perfect(coco_gt, 1)])
    with pytest.warns(UserWarning, match="processed twice"):
        ev.process([1], [_perfect(coco_gt, 1)])
    assert len(ev.results) == 2 and ev.image_ids == [1]
    ev.reset()
    assert ev.results == [] and ev.image_ids == [] and ev.per_class == []


def test_gt_not_mutated_by_evaluation(coco_gt: COCO) -> None:
    before = copy.deepcopy(coco_gt.dataset["images"])
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    ev.process([1], [_noisy(coco_gt, 1, seed=0)])
    ev.evaluate()
    assert coco_gt.dataset["images"] == before


def test_primary_metric_is_bbox_map(coco_gt: COCO) -> None:
    assert CocoEvaluator.primary_metric == "bbox/mAP"
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    assert ev.backend == "pycocotools"  # the default
    assert ev.primary_metric in ev.evaluate()


def test_unknown_backend_is_a_config_error(coco_gt: COCO) -> None:
    from framework.config.validation import ConfigError

    with pytest.raises(ConfigError, match="not a COCO evaluation backend.*Did you mean 'faster_coco_eval'"):
        CocoEvaluator(coco_gt, LABEL_TO_CAT, backend="faster_cocoeval")


def test_missing_faster_coco_eval_says_how_to_install(coco_gt: COCO, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from framework.config.validation import ConfigError
    from framework.evaluation.coco import EvaluationBackendNotInstalledError

    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # makes `import faster_coco_eval` fail
    with pytest.raises(EvaluationBackendNotInstalledError) as info:
        CocoEvaluator(coco_gt, LABEL_TO_CAT, backend="faster_coco_eval")
    # A ConfigError (the CLI prints it without a traceback) and an ImportError.
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ImportError)
    message = str(info.value)
    assert "pip install faster-coco-eval" in message and "evaluation.backend=pycocotools" in message
    CocoEvaluator(coco_gt, LABEL_TO_CAT)  # the default backend needs nothing extra


def test_faster_backend_matches_on_the_small_set(coco_gt: COCO) -> None:
    pytest.importorskip("faster_coco_eval")
    dets = {img_id: _noisy(coco_gt, img_id, seed=img_id) for img_id in (1, 2, 3)}
    ev = CocoEvaluator(coco_gt, LABEL_TO_CAT, backend="faster_coco_eval")
    ev.process(list(dets), list(dets.values()))
    metrics = ev.evaluate()
    assert [metrics[n] for n in COCO_METRIC_NAMES] == _direct_stats(coco_gt, dets, [1, 2, 3])
    assert "Average Precision" in ev.summary and len(ev.summary.splitlines()) == 12
    assert ev.coco_eval is not None and list(ev.coco_eval.params.imgIds) == [1, 2, 3]
    # Image 1: one match per class, 1/(1+eps) in pycocotools, although faster_coco_eval alone gives exactly 1.
    ev.reset()
    ev.process([1], [_perfect(coco_gt, 1)])
    metrics = ev.evaluate()
    slow = CocoEvaluator(coco_gt, LABEL_TO_CAT)
    slow.process([1], [_perfect(coco_gt, 1)])
    assert metrics == slow.evaluate()
    assert metrics["bbox/mAP"] < 1.0
    # All three images: two matches for cat, so its precision is exactly 1 in both.
    for e in (ev, slow):
        e.reset()
        e.process([1, 2, 3], [_perfect(coco_gt, i) for i in (1, 2, 3)])
    assert ev.evaluate() == slow.evaluate()
    assert ev.per_class[0]["AP"] == slow.per_class[0]["AP"] == 1.0
