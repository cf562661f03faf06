"""Pick the evaluator a dataset is scored with, and give every evaluator and plot one ground-truth format.

`dataset.metric` chooses: `coco` (the 12 numbers, by pycocotools or faster-coco-eval), `voc07` / `voc12` (VOC
AP@0.5 with 11-point or area interpolation). Every dataset of ours carries a pycocotools `COCO` index of its
annotations (VOC's difficult objects and Cityscapes' group regions as crowd), so the ground truth for VOC metrics
and for the plots is read from that one place.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from framework.config.validation import ConfigError, did_you_mean

METRICS = ("coco", "voc07", "voc12")


def ground_truth(dataset: Any) -> list[dict[str, Any]]:
    """Per image of `dataset` (in its order): image_id, boxes (N, 4) XYXY in original pixels, labels 0..K-1, and
    `ignore` (crowd regions; VOC's difficult objects), read from the dataset's COCO index."""
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
    return out


def build_evaluator(dataset: Any, metric: str = "coco", backend: str = "pycocotools") -> Any:
    """The evaluator for `dataset` under `metric` (see the module docstring)."""
    if metric == "coco":
        from framework.evaluation.coco import CocoEvaluator

        return CocoEvaluator(dataset.coco, dataset.label_to_cat_id, dataset.classes, backend=backend)
    if metric in ("voc07", "voc12"):
        from framework.evaluation.voc import VOCEvaluator

        annotations = [{"image_id": g["image_id"], "boxes": g["boxes"], "labels": g["labels"], "difficult": g["ignore"]}
                       for g in ground_truth(dataset)]
        return VOCEvaluator(annotations, dataset.classes, interpolation=metric)
    raise ConfigError(f"dataset.metric={metric!r} is not a metric.{did_you_mean(metric, METRICS)} "
                      f"Choose one of {', '.join(METRICS)}.")
