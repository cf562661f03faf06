"""Runs in each process of the two-rank gloo group of test_distributed.py (a module, so spawn can import it)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist

from framework.evaluation.coco import CocoEvaluator
from framework.evaluation.distributed import gather_predictions
from framework.evaluation.masks import compact_detection


def fake_detections(coco, image_ids, seed=0):
    """Near-perfect detections with some noise and false positives, one dict per image, with masks (the objects'
    own, each shifted by a pixel or two; the false positives' are their boxes) as a mask model gives them."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for img_id in image_ids:
        anns = coco.imgToAnns.get(img_id, [])
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1) + torch.randn(len(anns), 4, generator=g)
        fp = torch.rand(3, 2, generator=g) * 100
        boxes = torch.cat([boxes, torch.cat([fp, fp + 20], 1)])
        labels = torch.tensor([a["category_id"] - 1 for a in anns] + [0, 1, 2], dtype=torch.int64)
        scores = torch.rand(len(labels), generator=g)
        info = coco.imgs[img_id]
        masks = torch.zeros(len(labels), info["height"], info["width"], dtype=torch.bool)
        for k, a in enumerate(anns):
            dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
            masks[k] = torch.from_numpy(coco.annToMask(a)).bool().roll((dy, dx), (0, 1))
        for k, (x0, y0) in enumerate(fp.long().tolist(), start=len(anns)):
            masks[k, y0:y0 + 20, x0:x0 + 20] = True
        out.append({"boxes": boxes, "scores": scores, "labels": labels, "masks": masks})
    return out


def run(rank: int, world: int, init_file: str, ann_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        evaluator = CocoEvaluator(ann_file, [1, 2, 3, 4], ["circle", "square", "triangle", "cross"])
        ids = sorted(evaluator.coco_gt.getImgIds())
        dets = [compact_detection(d) for d in fake_detections(evaluator.coco_gt, ids)]  # masks as RLE, as gathered
        mine = list(range(rank, len(ids), world))
        if rank == world - 1:
            mine.append(0)  # what DistributedSampler pads in: an image already on rank 0
        g_ids, g_dets = gather_predictions([ids[i] for i in mine], [dets[i] for i in mine])
        evaluator.process(g_ids, g_dets)
        metrics = evaluator.evaluate()
        if rank == 0:
            Path(out_file).write_text(json.dumps({"metrics": metrics, "ids": g_ids}))
    finally:
        dist.destroy_process_group()
