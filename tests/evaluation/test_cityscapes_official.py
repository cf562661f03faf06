"""Cityscapes' official instance-level AP (cityscapesscripts) next to the COCO-style mask AP, on the shapes
pictures in Cityscapes layout: predictions written in the official format, scored by the official matching against
the instanceIds PNGs."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from framework.data.datasets.cityscapes import CityscapesDetection
from framework.evaluation import cityscapes as cityscapes_eval
from framework.evaluation.build import build_evaluator
from framework.evaluation.cityscapes import official_scorer

pytest.importorskip("cityscapesscripts")


@pytest.fixture(scope="module")
def val_set(shapes_cityscapes_root):
    return CityscapesDetection(str(shapes_cityscapes_root), split="val", with_masks=True)


def _exact(dataset, wrong_class: bool = False) -> tuple[list[int], list[dict[str, torch.Tensor]]]:
    """Every instance's own mask (the group regions left out), optionally with the next class's label."""
    coco, ids, dets = dataset.coco, sorted(dataset.coco.imgs), []
    for img_id in ids:
        anns = [a for a in coco.imgToAnns.get(img_id, []) if not a["iscrowd"]]
        h, w = coco.imgs[img_id]["height"], coco.imgs[img_id]["width"]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = [(dataset.cat_id_to_label[a["category_id"]] + int(wrong_class)) % dataset.num_classes for a in anns]
        masks = np.stack([coco.annToMask(a) for a in anns]) if anns else np.zeros((0, h, w), np.uint8)
        dets.append({"boxes": boxes, "scores": torch.ones(len(anns)), "labels": torch.tensor(labels),
                     "masks": torch.from_numpy(masks).bool()})
    return ids, dets


def test_official_ap_of_exact_and_of_wrong_masks(val_set) -> None:
    ev = build_evaluator(val_set, "coco")  # a Cityscapes set with masks: the official scorer comes along
    assert ev.official is not None and all(p.is_file() for p in ev.official.gt_files.values())
    ids, dets = _exact(val_set)
    assert sum(len(d["labels"]) for d in dets) > 0
    ev.process(ids, dets)
    metrics = ev.evaluate()  # the COCO-style numbers, by default
    assert metrics["segm/mAP"] == pytest.approx(1.0) and "cityscapes/AP" not in metrics
    assert ev.evaluate_official() == {"cityscapes/AP": 1.0, "cityscapes/AP50": 1.0}

    ev.reset()
    ev.process(*_exact(val_set, wrong_class=True))
    ev.evaluate()
    assert ev.evaluate_official()["cityscapes/AP"] < 1.0
    assert ev.official([], ids) == {"cityscapes/AP": 0.0, "cityscapes/AP50": 0.0}  # nothing detected


def test_official_ap_only_for_cityscapes_masks(val_set, shapes_cityscapes_root, caplog, monkeypatch) -> None:
    boxes_only = CityscapesDetection(str(shapes_cityscapes_root), split="val")
    assert official_scorer(boxes_only) is None  # a box model's Cityscapes: COCO box AP only
    assert official_scorer(object()) is None
    monkeypatch.setattr(cityscapes_eval.importlib.util, "find_spec",
                        lambda name, *a: None if name == "cityscapesscripts" else object())
    with caplog.at_level(logging.INFO, logger="framework"):
        assert official_scorer(val_set) is None
    assert "cityscapesscripts is not installed" in caplog.text


def test_no_masks_no_official_numbers(val_set) -> None:
    ev = build_evaluator(val_set, "coco")
    img_id = sorted(val_set.coco.imgs)[0]
    ev.process([img_id], [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                           "labels": torch.zeros(0, dtype=torch.int64)}])
    assert "segm/mAP" not in ev.evaluate()
    assert ev.evaluate_official() == {}  # boxes only: no masks to score officially
