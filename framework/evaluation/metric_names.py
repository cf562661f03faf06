"""Metric keys name the task they score: `bbox/mAP`, `segm/mAP`, … (pycocotools' `iouType`), so a mask model's box
and mask numbers sit side by side in metrics.json, metrics.jsonl, TensorBoard and the logs, and
`trainer.best_metric` can pick either. The names before issue 21 (`bbox_mAP`, …) still work where a user or an old
checkpoint names a metric, with a warning."""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["COCO_METRIC_NAMES", "COCO_SEGM_METRIC_NAMES", "COCO_STATS", "LEGACY_NAMES", "TASKS",
           "canonical_metric_name", "coco_metric_names", "group_by_task", "rename_legacy", "task_of"]

#: The tasks COCO evaluation scores (pycocotools' `iouType`): boxes, instance masks.
TASKS: tuple[str, ...] = ("bbox", "segm")

#: `COCOeval.stats` in the order pycocotools fills them (its 12-line summary).
COCO_STATS: tuple[str, ...] = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l",
                               "AR_1", "AR_10", "AR_100", "AR_s", "AR_m", "AR_l")


def coco_metric_names(task: str) -> tuple[str, ...]:
    """The 12 metric keys of one task: `bbox/mAP` … `bbox/AR_l`."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return tuple(f"{task}/{stat}" for stat in COCO_STATS)


COCO_METRIC_NAMES: tuple[str, ...] = coco_metric_names("bbox")
COCO_SEGM_METRIC_NAMES: tuple[str, ...] = coco_metric_names("segm")

#: The keys before they named their task (`bbox_mAP`, and mmdetection's spelling of the mask ones, `segm_mAP`).
LEGACY_NAMES: dict[str, str] = {f"{task}_{stat}": f"{task}/{stat}" for task in TASKS for stat in COCO_STATS}


def canonical_metric_name(name: str, setting: str = "trainer.best_metric") -> str:
    """`name`, or its new spelling when it is an old one (`bbox_mAP` → `bbox/mAP`), with a FutureWarning (shown by
    default: it is the user's setting, or an old saved config, that should change). `setting` names where it
    came from, for the message."""
    new = LEGACY_NAMES.get(name)
    if new is None:
        return name
    # stacklevel 1: the warning points here, so Python's default filter shows it once however many callbacks
    # (checkpoint, early stopping) read the same setting
    warnings.warn(f"{setting}={name} is the old name of the metric {new} (metric keys now name their task: "
                  f"bbox/…, segm/…); use {setting}={new}. The old name will stop working in a later release.",
                  FutureWarning, stacklevel=1)
    return new


def rename_legacy(record: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics record (one metrics.jsonl line) with its old keys renamed, quietly, so an old run's curves and a
    resumed run's new ones share their names."""
    return {LEGACY_NAMES.get(k, k): v for k, v in record.items()}


def task_of(name: str) -> str:
    """The task a metric key scores: the part before `/` (`segm/mAP` → `segm`, `cityscapes/AP` → `cityscapes`);
    keys without one (VOC's `voc_mAP`) score boxes."""
    return name.split("/", 1)[0] if "/" in name else "bbox"


def group_by_task(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """`{"bbox": {"bbox/mAP": …}, "segm": {"segm/mAP": …}}`, keys kept whole and in order: metrics.json's layout."""
    out: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        out.setdefault(task_of(name), {})[name] = value
    return out
