"""Pick the evaluator a dataset is scored with, and give every evaluator and plot one ground-truth format.

`dataset.metric` chooses: `coco` (the 12 numbers, by pycocotools or faster-coco-eval), `voc07` / `voc12` (VOC
AP@0.5 with 11-point or area interpolation). Every dataset of ours carries a pycocotools `COCO` index of its
annotations (VOC's difficult objects and Cityscapes' group regions as crowd), so the ground truth for VOC metrics
and for the plots is read from that one place; with masks, so is the mask ground truth of the segm plots.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from framework.config.validation import ConfigError, did_you_mean

METRICS = ("coco", "voc07", "voc12")


def ground_truth(dataset: Any, masks: bool = False) -> list[dict[str, Any]]:
    """Per image of `dataset` (in its order): image_id, boxes (N, 4) XYXY in original pixels, labels 0..K-1, and
    `ignore` (crowd regions; VOC's difficult objects), read from the dataset's COCO index. With `masks`, also
    `rles`: each object's mask as an RLE dict (from its `segmentation`: polygons, RLE or crowd RLE)."""
    coco, to_label = dataset.coco, dataset.cat_id_to_label
    out = []
    ids = list(getattr(dataset, "ids", []))
    if not ids or not all(isinstance(i, (int, np.integer)) for i in ids):  # e.g. VOC's string ids
        ids = sorted(coco.imgs)
    for img_id in ids:
        anns = [a for a in coco.imgToAnns.get(img_id, []) if int(a["category_id"]) in to_label]
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        out.append({
            "image_id": int(img_id),
            "boxes": np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32),
            "labels": np.array([to_label[int(a["category_id"])] for a in anns], dtype=np.int64),
            "ignore": np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
        })
        if masks:
            out[-1]["rles"] = [_rle(coco, a) for a in anns]
    return out


def has_masks(dataset: Any) -> bool:
    """Whether the dataset's ground truth carries segmentations (a dataset built with masks)."""
    return any(a.get("segmentation") for a in dataset.coco.dataset.get("annotations", []))


def _rle(coco: Any, ann: dict[str, Any]) -> dict[str, Any]:
    if not ann.get("segmentation"):
        raise ValueError(f"annotation id {ann.get('id')} (image {ann.get('image_id')}) has no 'segmentation': the "
                         "mask plots need every object's mask (build the dataset with_masks=True)")
    rle = coco.annToRLE(ann)
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def build_evaluator(dataset: Any, metric: str = "coco", backend: str = "pycocotools",
                    tasks: tuple[str, ...] | None = None) -> Any:
    """The evaluator for `dataset` under `metric` (see the module docstring). `tasks`: what a COCO evaluator
    scores (None: boxes, and masks when the detections carry them; `CocoEvaluator`)."""
    if tasks is not None and "segm" in tasks and metric != "coco":
        raise ConfigError(f"dataset.metric={metric} scores boxes only; instance masks (segm) are scored with "
                          "dataset.metric=coco")
    if metric == "coco":
        from framework.evaluation.cityscapes import official_scorer
        from framework.evaluation.coco import CocoEvaluator

        # masks are scored when the model's detections carry them (tasks=None); Cityscapes with masks adds its
        # official instance AP in tools/test.py
        return CocoEvaluator(dataset.coco, dataset.label_to_cat_id, dataset.classes, backend=backend, tasks=tasks,
                             official=official_scorer(dataset))
    if metric in ("voc07", "voc12"):
        from framework.evaluation.voc import VOCEvaluator

        annotations = [{"image_id": g["image_id"], "boxes": g["boxes"], "labels": g["labels"], "difficult": g["ignore"]}
                       for g in ground_truth(dataset)]
        return VOCEvaluator(annotations, dataset.classes, interpolation=metric)
    raise ConfigError(f"dataset.metric={metric!r} is not a metric.{did_you_mean(metric, METRICS)} "
                      f"Choose one of {', '.join(METRICS)}.")
