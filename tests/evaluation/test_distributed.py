"""Evaluation over several processes: predictions gathered from two gloo ranks (masks as RLE), the padded duplicate
dropped, give exactly the single-process numbers, box and mask."""
from __future__ import annotations

import json

import torch.multiprocessing as mp

from framework.evaluation.coco import CocoEvaluator
from tests.evaluation.distributed_worker import fake_detections, run


def test_two_ranks_equal_one_process(shapes_root, tmp_path):
    ann = str(shapes_root / "annotations" / "instances_val.json")
    out = tmp_path / "metrics.json"
    mp.spawn(run, args=(2, str(tmp_path / "init"), ann, str(out)), nprocs=2, join=True)
    gathered = json.loads(out.read_text())

    single = CocoEvaluator(ann, [1, 2, 3, 4], ["circle", "square", "triangle", "cross"])
    ids = sorted(single.coco_gt.getImgIds())
    single.process(ids, fake_detections(single.coco_gt, ids))
    expected = single.evaluate()
    assert sorted(gathered["ids"]) == ids  # each image once, the padded duplicate removed
    assert gathered["metrics"] == expected and expected["bbox/mAP"] > 0 and expected["segm/mAP"] > 0
