"""Evaluation under torchrun: every rank predicts its shard, rank results are gathered and de-duplicated.

`DistributedSampler` pads the last shard by repeating images so every rank has the same number of batches; an
image scored twice would count its ground truth twice. Gathering (image id, detections) pairs and keeping the
first occurrence of each id makes the numbers equal a single-process evaluation.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch.distributed as dist


def gather_predictions(image_ids: Sequence[int], detections: Sequence[Any]) -> tuple[list[int], list[Any]]:
    """All ranks' predictions on every rank, each image once, in rank order; unchanged outside torch.distributed.

    Detections must be on the CPU (they are pickled), masks as RLE (`framework.evaluation.masks.compact_detection`):
    full masks would make every rank send megabytes per image.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(image_ids), list(detections)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (list(image_ids), list(detections)))
    ids: list[int] = []
    dets: list[Any] = []
    seen: set[int] = set()
    for rank_ids, rank_dets in gathered:
        for i, d in zip(rank_ids, rank_dets):
            if i not in seen:
                seen.add(i)
                ids.append(i)
                dets.append(d)
    return ids, dets
