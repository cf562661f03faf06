"""Mask AP (segm) next to box AP: pycocotools' own numbers through both backends, results.segm.json and its round
trip through the results-file reader of tools/eval_results.py, the per-class table, the segm plots, metrics.json's
layout, and the task-named metric keys in the checkpoint and early-stopping callbacks (new and old names).

The randomized ground truth holds polygons (some in two parts), compressed RLE and crowd regions as uncompressed
RLE, in all three COCO area ranges, on images of at most 128 px. Detections are masks (bool [N, H, W]) fed through
``CocoEvaluator.process``: shifted copies of the objects, wrong classes, hits on crowd regions, false positives,
tied scores, images without detections. The reference is raw pycocotools ``COCOeval(iouType="segm")`` on the same
masks, encoded here without the evaluator.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from framework.config.validation import ConfigError
from framework.engine.callbacks.checkpoint import Checkpoint
from framework.engine.callbacks.early_stop import EarlyStopping
from framework.engine.callbacks.metrics_log import MetricsLog
from framework.engine.evaluation import Evaluation
from framework.evaluation.build import build_evaluator
from framework.evaluation.coco import (COCO_METRIC_NAMES, COCO_SEGM_METRIC_NAMES, CocoEvaluator,
                                       format_metrics_table)
from framework.evaluation.masks import compact_detection, decode_rles, encode_masks
from framework.evaluation.metric_names import group_by_task, rename_legacy
from framework.evaluation.results_file import read_results, results_tasks, results_to_detections

LABEL_TO_CAT = [2, 5, 9, 11]  # non-contiguous category ids
NO_GT_CAT = 11  # never in the ground truth
CLASSES = ["disc", "blob", "star", "ghost"]
SEEDS = [0, 1, 2]


def _faster() -> str:
    pytest.importorskip("faster_coco_eval")
    return "faster_coco_eval"


@pytest.fixture(params=["pycocotools", "faster_coco_eval"])
def backend(request: pytest.FixtureRequest) -> str:
    return _faster() if request.param == "faster_coco_eval" else request.param


# ------------------------------------------------------------------------------------------------------ data
def _polygon(rng: np.random.Generator, cx: float, cy: float, r: float) -> list[float]:
    k = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = r * rng.uniform(0.6, 1.0, k)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).ravel().round(2).tolist()


def _uncompressed(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE (crowd regions): run lengths of the column-major mask, starting with zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + runs}


def _ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def _segmentation(rng: np.random.Generator, h: int, w: int, kind: str) -> tuple[Any, np.ndarray]:
    """A segmentation of `kind` (polygon, rle, crowd) and its mask; sizes span the three area ranges."""
    r = float(rng.choice([rng.uniform(3, 12), rng.uniform(20, 40), rng.uniform(55, 70)]))
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    if kind == "polygon":
        segm = [_polygon(rng, cx, cy, r)]
        if rng.random() < 0.3:  # an object in two parts
            segm.append(_polygon(rng, rng.uniform(0, w), rng.uniform(0, h), r / 2))
        mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segm, h, w)))
        return segm, mask
    mask = _ellipse(h, w, cx, cy, r, r * rng.uniform(0.4, 1.0)).astype(np.uint8)
    if kind == "crowd":
        mask |= _ellipse(h, w, rng.uniform(0, w), rng.uniform(0, h), r, r / 2).astype(np.uint8)
        return _uncompressed(mask), mask
    return encode_masks(mask[None])[0], mask  # compressed, counts as text (as a JSON file holds it)


def random_case(seed: int, num_images: int = 24) -> tuple[dict[str, Any], dict[int, dict[str, torch.Tensor]]]:
    """A COCO ground-truth dict with segmentations, and per-image mask detections."""
    rng = np.random.default_rng(seed)
    gt_cats = [c for c in LABEL_TO_CAT if c != NO_GT_CAT]
    images, anns, dets = [], [], {}
    for img_id in range(1, num_images + 1):
        h, w = int(rng.integers(48, 129)), int(rng.integers(48, 129))
        images.append({"id": img_id, "file_name": f"{img_id}.png", "height": h, "width": w})
        masks, scores, labels = [], [], []
        for _ in range(int(rng.integers(0, 7))):
            kind = str(rng.choice(["polygon", "polygon", "rle", "crowd"], p=[0.4, 0.2, 0.3, 0.1]))
            segm, mask = _segmentation(rng, h, w, kind)
            if not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask))
            area = float(mask_utils.area(rle))
            if kind == "polygon" and rng.random() < 0.5:
                area *= rng.uniform(0.9, 1.1)  # COCO's polygon areas are not the pixel count
            cat = int(rng.choice(gt_cats))
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat, "segmentation": segm,
                         "area": area, "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": int(kind == "crowd")})
            if rng.random() < 0.85:  # detected: a shifted copy, sometimes with the wrong class
                shifted = np.roll(mask, tuple(rng.integers(-3, 4, 2)), (0, 1))
                label = LABEL_TO_CAT.index(cat) if rng.random() < 0.85 else int(rng.integers(len(LABEL_TO_CAT)))
                masks.append(shifted)
                labels.append(label)
                scores.append(float(rng.choice([rng.random(), 0.5])))  # some tied scores
        for _ in range(int(rng.integers(0, 3))):  # false positives
            masks.append(_ellipse(h, w, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 20), 8))
            labels.append(int(rng.integers(len(LABEL_TO_CAT))))
            scores.append(float(rng.random()))
        if rng.random() < 0.1:
            masks, labels, scores = [], [], []
        stack = np.stack(masks).astype(bool) if masks else np.zeros((0, h, w), dtype=bool)
        boxes = np.array([mask_utils.toBbox(r) for r in mask_utils.encode(
            np.asfortranarray(stack.transpose(1, 2, 0).astype(np.uint8)))]).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        dets[img_id] = {"boxes": torch.from_numpy(boxes), "scores": torch.tensor(scores, dtype=torch.float64),
                        "labels": torch.tensor(labels, dtype=torch.int64), "masks": torch.from_numpy(stack)}
    categories = [{"id": c, "name": n} for c, n in zip(LABEL_TO_CAT, CLASSES)]
    return {"images": images, "annotations": anns, "categories": categories}, dets


def _index(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def pycocotools_segm(dataset: dict[str, Any], dets: dict[int, dict[str, torch.Tensor]]) -> list[float]:
    """Raw pycocotools on the same masks: the reference."""
    gt = _index(dataset)
    results = []
    for img_id, d in dets.items():
        for mask, score, label in zip(d["masks"].numpy(), d["scores"].tolist(), d["labels"].tolist()):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            results.append({"image_id": img_id, "category_id": LABEL_TO_CAT[label], "segmentation": rle,
                            "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), "segm")
        ev.params.imgIds = sorted(dets)
        ev.params.catIds = sorted(LABEL_TO_CAT)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats]


@pytest.fixture(scope="module", params=SEEDS)
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], dict[int, dict[str, torch.Tensor]], list[float]]:
    dataset, dets = random_case(request.param)
    return dataset, dets, pycocotools_segm(dataset, dets)


def _evaluated(dataset: dict[str, Any], dets: dict[int, Any], backend: str = "pycocotools",
               **kwargs: Any) -> tuple[CocoEvaluator, dict[str, float]]:
    ev = CocoEvaluator(_index(dataset), LABEL_TO_CAT, CLASSES, backend=backend, **kwargs)
    ids = sorted(dets)
    ev.process(ids[:5], [dets[i] for i in ids[:5]])  # in two batches, as an evaluation pass gives them
    ev.process(ids[5:], [dets[i] for i in ids[5:]])
    return ev, ev.evaluate()


# ------------------------------------------------------------------------------------------------ numbers
def test_segm_ap_equals_pycocotools_on_both_backends(case, backend) -> None:
    dataset, dets, expected = case
    kinds = {("crowd" if a["iscrowd"] else "polygon" if isinstance(a["segmentation"], list) else "rle")
             for a in dataset["annotations"]}
    assert kinds == {"polygon", "rle", "crowd"}  # the case covers every kind of ground truth
    _, metrics = _evaluated(dataset, dets, backend)
    assert list(metrics) == list(COCO_METRIC_NAMES + COCO_SEGM_METRIC_NAMES)
    assert [metrics[n] for n in COCO_SEGM_METRIC_NAMES] == expected  # identical, not approximately
    assert 0.0 < metrics["segm/mAP"] < 1.0 and metrics["segm/mAP"] != metrics["bbox/mAP"]


def test_backends_agree_on_per_class_segm(case) -> None:
    _faster()
    dataset, dets, _ = case
    reference, _ = _evaluated(dataset, dets, "pycocotools")
    faster, _ = _evaluated(dataset, dets, "faster_coco_eval")
    assert json.dumps(faster.per_class_by_task) == json.dumps(reference.per_class_by_task)  # NaN ≠ NaN in ==
    assert math.isnan(reference.per_class_by_task["segm"][LABEL_TO_CAT.index(NO_GT_CAT)]["AP"])


def test_a_box_model_is_scored_as_before(case) -> None:
    dataset, dets, _ = case
    boxes_only = {i: {k: v for k, v in d.items() if k != "masks"} for i, d in dets.items()}
    ev, metrics = _evaluated(dataset, boxes_only)
    assert list(metrics) == list(COCO_METRIC_NAMES) and list(ev.per_class_by_task) == ["bbox"]
    assert ev.primary_metric == "bbox/mAP" and "IoU type" not in ev.summary
    with_masks, both = _evaluated(dataset, dets)
    assert {k: both[k] for k in COCO_METRIC_NAMES} == metrics  # masks change nothing about the box numbers
    assert with_masks.summary.startswith("IoU type bbox:") and "IoU type segm:" in with_masks.summary


def test_rles_and_masks_score_alike(case) -> None:
    dataset, dets, expected = case
    compact = {i: compact_detection(d) for i, d in dets.items()}
    assert all("masks" not in d and len(d["rles"]) == len(d["labels"]) for d in compact.values())
    _, metrics = _evaluated(dataset, compact)
    assert [metrics[n] for n in COCO_SEGM_METRIC_NAMES] == expected
    one = next(d for d in dets.values() if len(d["labels"]))
    assert torch.equal(decode_rles(compact_detection(one)["rles"]), one["masks"])


def test_bad_masks_are_refused_clearly(case) -> None:
    dataset, dets, _ = case
    img_id, det = next((i, d) for i, d in dets.items() if len(d["labels"]))
    ev = CocoEvaluator(_index(dataset), LABEL_TO_CAT, CLASSES)
    small = {**det, "masks": det["masks"][:, :-1]}
    with pytest.raises(ValueError, match=r"masks must be at the original image size"):
        ev.process([img_id], [small])
    ev = CocoEvaluator(_index(dataset), LABEL_TO_CAT, CLASSES, tasks=("bbox", "segm"))
    with pytest.raises(ValueError, match="carry no masks"):
        ev.process([img_id], [{k: v for k, v in det.items() if k != "masks"}])
    no_segm = copy.deepcopy(dataset)
    for a in no_segm["annotations"][:2]:
        del a["segmentation"]
    ev = CocoEvaluator(_index(no_segm), LABEL_TO_CAT, CLASSES)
    ev.process(sorted(dets), [dets[i] for i in sorted(dets)])
    with pytest.raises(ValueError, match=r"annotation id 1 .* has no 'segmentation'"):
        ev.evaluate()


def test_evaluation_leaves_the_datasets_segmentations_alone(case) -> None:
    dataset, dets, _ = case
    gt = _index(dataset)
    before = copy.deepcopy(gt.dataset["annotations"])
    ev = CocoEvaluator(gt, LABEL_TO_CAT, CLASSES)
    ev.process(sorted(dets), [dets[i] for i in sorted(dets)])
    first = ev.evaluate()
    assert [a["segmentation"] for a in gt.dataset["annotations"]] == [a["segmentation"] for a in before]
    ev.reset()
    ev.process(sorted(dets), [dets[i] for i in sorted(dets)])
    assert ev.evaluate() == first  # a second round (RLE ground truth cached) gives the same numbers


# ------------------------------------------------------------------------------------------- results files
def _dataset_stub(dataset: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(coco=_index(dataset), label_to_cat_id=LABEL_TO_CAT, classes=CLASSES,
                           cat_id_to_label={c: i for i, c in enumerate(LABEL_TO_CAT)})


def test_results_segm_json_round_trip(case, tmp_path: Path) -> None:
    dataset, dets, expected = case
    ev, metrics = _evaluated(dataset, dets)
    path = ev.write_results(tmp_path / "results.segm.json", task="segm")
    records = json.loads(path.read_text())
    assert records and set(records[0]) == {"image_id", "category_id", "segmentation", "score"}
    assert all(isinstance(r["segmentation"]["counts"], str) for r in records)

    stub = _dataset_stub(dataset)
    records = read_results(path)
    tasks = results_tasks(records, path)
    assert tasks == ("segm",)
    rescorer = build_evaluator(stub, "coco", tasks=tasks)
    assert rescorer.primary_metric == "segm/mAP"
    detections = results_to_detections(records, stub, path, tasks)
    rescorer.process(sorted(detections), [detections[i] for i in sorted(detections)])
    rescored = rescorer.evaluate()
    assert list(rescored) == list(COCO_SEGM_METRIC_NAMES)
    assert [rescored[n] for n in COCO_SEGM_METRIC_NAMES] == expected

    # detectron2's layout: box and mask in each record, both scored
    both = [{**b, "segmentation": s["segmentation"]} for b, s in zip(ev.results, ev.segm_results)]
    assert results_tasks(both, "both.json") == ("bbox", "segm")
    with pytest.raises(ConfigError, match="dataset.metric=coco"):
        build_evaluator(stub, "voc07", tasks=("segm",))
    bad = [{**records[0], "segmentation": {"size": [3, 4], "counts": "04"}}]
    with pytest.raises(ConfigError, match=r"record 0 .* is 3x4 \(height x width\) but the image is"):
        results_to_detections(bad, stub, path, ("segm",))


def test_metrics_json_and_results_files(case, tmp_path: Path) -> None:
    dataset, dets, _ = case
    ev, metrics = _evaluated(dataset, dets)
    Evaluation(loader=None, evaluator=ev).write_outputs({**metrics, "cityscapes/AP": 0.5}, tmp_path)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert list(written) == ["bbox", "segm", "cityscapes", "per_class"]
    assert list(written["segm"]) == list(COCO_SEGM_METRIC_NAMES) and written["bbox"]["bbox/mAP"] == metrics["bbox/mAP"]
    assert list(written["per_class"]) == ["bbox", "segm"] and len(written["per_class"]["segm"]) == len(CLASSES)
    assert (tmp_path / "results.bbox.json").is_file() and (tmp_path / "results.segm.json").is_file()
    table = format_metrics_table(metrics).splitlines()
    assert [line.split()[0] for line in table[2:]] == list(COCO_METRIC_NAMES + COCO_SEGM_METRIC_NAMES)


# ------------------------------------------------------------------------------------------ per class, plots
def test_per_class_table_shows_both_tasks(case) -> None:
    dataset, dets, _ = case
    ev, metrics = _evaluated(dataset, dets)
    lines = ev.format_per_class().splitlines()
    assert lines[0].split() == ["bbox", "segm"] and lines[1].split() == ["class"] + ["AP", "AP50", "AP75"] * 2
    assert [line.split()[0] for line in lines[3:]] == CLASSES
    row = lines[3 + 0].split()
    segm = ev.per_class_by_task["segm"][0]
    assert row[4:] == [f"{segm['AP']:.3f}", f"{segm['AP50']:.3f}", f"{segm['AP75']:.3f}"]
    valid = [r["AP"] for r in ev.per_class_by_task["segm"] if not math.isnan(r["AP"])]
    assert np.mean(valid) == pytest.approx(metrics["segm/mAP"])  # the classes' mean is the summary's mAP


def test_segm_plots(tmp_path: Path) -> None:
    from framework.evaluation.plots import detection_curves, write_plots

    dataset, dets = random_case(0, num_images=6)
    coco = _index(dataset)
    gts = []
    for img_id in sorted(dets):
        anns = coco.imgToAnns.get(img_id, [])
        gts.append({"image_id": img_id, "boxes": np.array([a["bbox"] for a in anns]).reshape(-1, 4),
                    "labels": np.array([LABEL_TO_CAT.index(a["category_id"]) for a in anns]),
                    "ignore": np.array([bool(a["iscrowd"]) for a in anns]),
                    "rles": [coco.annToRLE(a) for a in anns]})
    perfect = {g["image_id"]: {"boxes": g["boxes"], "scores": np.ones(len(g["labels"])), "labels": g["labels"],
                               "rles": g["rles"]} for g in gts}
    for g in gts:  # boxes that match nothing: only the masks can give the perfect score
        g["boxes"] = g["boxes"] + 1000
    curves = detection_curves(gts, perfect, len(CLASSES), task="segm")
    assert curves["map"] == pytest.approx(1.0)
    assert detection_curves(gts, perfect, len(CLASSES))["map"] == 0.0
    report = write_plots(gts, {i: compact_detection(d) for i, d in dets.items()}, CLASSES, tmp_path, task="segm",
                         return_figures=False)
    assert sorted(p.name for p in report["paths"].values()) == ["segm_confusion_matrix.png", "segm_f1_curve.png",
                                                                 "segm_pr_curve.png"]
    with pytest.raises(ValueError, match="no 'rles'"):
        detection_curves([{k: v for k, v in gts[0].items() if k != "rles"}], {}, len(CLASSES), task="segm")


# ------------------------------------------------------------------------------------------ metric keys
class _Trainer:
    """What the checkpoint callback reads and calls."""

    def __init__(self) -> None:
        self.epoch, self.results, self.saved = 0, {}, []

    def save(self, name: str) -> None:
        self.saved.append((self.epoch, name))


def test_best_checkpoint_chosen_on_segm_map() -> None:
    trainer, callback = _Trainer(), Checkpoint("segm/mAP", interval=0, keep=None)
    for epoch, (box, mask) in enumerate([(0.3, 0.2), (0.5, 0.1), (0.4, 0.25)], start=1):
        trainer.epoch = epoch
        callback.on_eval_end(trainer, {"bbox/mAP": box, "segm/mAP": mask})
    assert trainer.saved == [(1, "best.pth"), (3, "best.pth")]  # the box AP's best (epoch 2) does not count
    assert trainer.results["best"] == {"metric": "segm/mAP", "value": 0.25, "epoch": 3}
    with pytest.raises(ConfigError, match="segm/mAP is not among the metrics: bbox/mAP.*metrics need a model that "
                                          "predicts masks"):
        Checkpoint("segm/mAP", interval=0, keep=None).on_eval_end(trainer, {"bbox/mAP": 0.5})


def test_old_metric_names_still_work_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match=r"trainer.best_metric=bbox_mAP is the old name of the metric bbox/mAP"):
        callback = Checkpoint("bbox_mAP", interval=0, keep=None)
    assert callback.metric == "bbox/mAP"
    with pytest.warns(FutureWarning, match="segm/mAP_50"):
        assert EarlyStopping("segm_mAP_50", patience=3).metric == "segm/mAP_50"
    trainer = _Trainer()
    callback.on_eval_end(trainer, {"bbox/mAP": 0.5})
    assert trainer.saved == [(0, "best.pth")]

    # a checkpoint saved under the old name resumes its best; one chosen on another metric does not
    resumed = Checkpoint("bbox/mAP", interval=0, keep=None)
    resumed.on_resume(trainer, {"best": {"metric": "bbox_mAP", "value": 0.4, "epoch": 3}})
    assert resumed.best == {"metric": "bbox/mAP", "value": 0.4, "epoch": 3}
    switched = Checkpoint("segm/mAP", interval=0, keep=None)
    switched.on_resume(trainer, {"best": {"metric": "bbox_mAP", "value": 0.4, "epoch": 3}})
    assert switched.best["value"] == float("-inf") and switched.best["metric"] == "segm/mAP"


def test_old_run_records_get_new_names(tmp_path: Path) -> None:
    assert rename_legacy({"mode": "val", "bbox_mAP": 0.1, "voc_mAP": 0.2}) == {"mode": "val", "bbox/mAP": 0.1,
                                                                              "voc_mAP": 0.2}
    assert group_by_task({"bbox/mAP": 1, "segm/mAP": 2, "voc_mAP": 3}) == {"bbox": {"bbox/mAP": 1, "voc_mAP": 3},
                                                                           "segm": {"segm/mAP": 2}}
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    (old / "metrics.jsonl").write_text(json.dumps({"mode": "val", "epoch": 1, "iter": 10, "bbox_mAP": 0.1}) + "\n")
    trainer = SimpleNamespace(resumed_from=str(old / "checkpoints" / "last.pth"), work_dir=tmp_path / "new",
                              dist=SimpleNamespace(is_main=True), epoch=1, batch_in_epoch=0, iter=10)
    MetricsLog(plot=False).on_resume(trainer, {})
    record = json.loads((tmp_path / "new" / "metrics.jsonl").read_text())
    assert record == {"mode": "val", "epoch": 1, "iter": 10, "bbox/mAP": 0.1}


def test_eval_results_cli_rescores_results_segm_json(shapes_root: Path, repo_root: Path, tmp_path: Path) -> None:
    """tools/test.py's results.segm.json, scored by tools/eval_results.py alone: the same 12 mask numbers."""
    import os
    import subprocess
    import sys

    from framework.data.datasets.shapes import ShapesDataset

    dataset = ShapesDataset(str(shapes_root), split="val", with_masks=True)
    coco, rng = dataset.coco, np.random.default_rng(0)
    ev = build_evaluator(dataset, "coco")
    ids = sorted(coco.imgs)
    dets = []
    for img_id in ids:  # each object's mask shifted by up to 3 px, with a random score
        anns = coco.imgToAnns.get(img_id, [])
        masks = [np.roll(coco.annToMask(a), tuple(rng.integers(-3, 4, 2)), (0, 1)) for a in anns]
        h, w = coco.imgs[img_id]["height"], coco.imgs[img_id]["width"]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # XYWH → XYXY (only the masks are scored here)
        dets.append({"boxes": boxes,
                     "scores": torch.from_numpy(rng.random(len(anns))),
                     "labels": torch.tensor([dataset.cat_id_to_label[a["category_id"]] for a in anns]),
                     "masks": torch.from_numpy(np.stack(masks) if masks else np.zeros((0, h, w), np.uint8))})
    ev.process(ids, dets)
    expected = {k: v for k, v in ev.evaluate().items() if k.startswith("segm/")}
    assert 0.3 < expected["segm/mAP"] < 1.0
    path = ev.write_results(tmp_path / "results.segm.json", task="segm")

    out = tmp_path / "rescored"
    proc = subprocess.run([sys.executable, "tools/eval_results.py", f"results={path}", "dataset=shapes",
                           f"dataset.root={shapes_root}", "evaluation.plots=false", f"hydra.run.dir={out}"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    written = json.loads((out / "metrics.json").read_text())
    assert list(written) == ["segm", "per_class"] and written["segm"] == expected
