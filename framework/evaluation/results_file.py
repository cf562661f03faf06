"""COCO results files read back as detections, for scoring detections made elsewhere (tools/eval_results.py).

A results file is a JSON list of `{image_id, category_id, score}` records with a `bbox` ([x, y, w, h]: box
results, as results.bbox.json), a `segmentation` (an RLE dict, or polygons: mask results, as results.segm.json),
or both (detectron2's coco_instances_results.json). What the records carry decides what is scored: boxes when
every record has a `bbox`, masks when every record has a `segmentation`; a mask-only file gets its boxes from the
masks' extents (for the plots) but no box AP.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pycocotools import mask as mask_utils

from framework.config.validation import ConfigError

__all__ = ["read_results", "results_to_detections", "results_tasks"]


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The records of a COCO results JSON, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Results file {path} does not exist (set results=/path/to/results.bbox.json or "
                                "results.segm.json).")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"Could not parse {path}: {e.msg} at line {e.lineno}, column {e.colno}") from e
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ConfigError(f"{path} is not a COCO results file: expected a JSON list of {{image_id, category_id, "
                          "bbox and/or segmentation, score}} objects")
    return records


def results_tasks(records: list[dict[str, Any]], path: str | Path) -> tuple[str, ...]:
    """What the records let us score: ("bbox",), ("segm",) or both (see the module docstring); an empty file is
    a mask file when its name says `segm`."""
    has_box = [("bbox" in r) for r in records]
    has_mask = [("segmentation" in r) for r in records]
    tasks = tuple(t for t, flags in (("bbox", has_box), ("segm", has_mask)) if flags and all(flags))
    if not records:  # nothing detected: the file's name says what it held (results.segm.json)
        return ("segm",) if "segm" in Path(path).name else ("bbox",)
    if not tasks:
        n = next(i for i, (b, m) in enumerate(zip(has_box, has_mask)) if not (b and m))
        raise ConfigError(f"{path}: record {n} has neither the `bbox` nor the `segmentation` that the other records "
                          "have; a results file holds box results, mask results, or both, in every record")
    return tasks


def _rle(segm: Any, height: int, width: int) -> dict[str, Any]:
    """Compressed RLE (counts as str) of a result's segmentation: compressed or uncompressed RLE, or polygons."""
    if isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes)):
        rle = dict(segm)
    else:
        rle = mask_utils.frPyObjects(segm, height, width)
        rle = mask_utils.merge(rle) if isinstance(rle, list) else rle
    if [int(s) for s in rle["size"]] != [height, width]:
        raise ValueError(f"its RLE is {rle['size'][0]}x{rle['size'][1]} (height x width) but the image is "
                         f"{height}x{width}")
    counts = rle["counts"]
    return {"size": [height, width], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def results_to_detections(records: list[dict[str, Any]], dataset: Any, path: str | Path,
                          tasks: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    """Detections per image id of `dataset` (every image, empty ones too): boxes XYXY, scores, contiguous labels
    and, when masks are scored, `rles`."""
    coco = dataset.coco
    known = {int(i) for i in coco.imgs}
    per_image: dict[int, list[tuple[list[float], float, int, dict[str, Any] | None]]] = {i: [] for i in known}
    for n, r in enumerate(records):
        try:
            img, cat, score = int(r["image_id"]), int(r["category_id"]), float(r["score"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{path}: record {n} is not {{image_id, category_id, bbox and/or segmentation, "
                              f"score}}: {r!r}") from e
        if img not in known:
            raise ConfigError(f"{path}: record {n} has image_id {img}, which is not in the dataset "
                              f"({coco.dataset.get('info', {}).get('description', 'val split')})")
        if cat not in dataset.cat_id_to_label:
            raise ConfigError(f"{path}: record {n} has category_id {cat}, not one of the dataset's "
                              f"{sorted(dataset.cat_id_to_label)}")
        rle = None
        if "segm" in tasks:
            info = coco.imgs[img]
            try:
                rle = _rle(r["segmentation"], int(info["height"]), int(info["width"]))
            except (TypeError, ValueError, KeyError, IndexError) as e:
                raise ConfigError(f"{path}: record {n} (image_id {img}) has a bad segmentation: {e}") from e
        if "bbox" in tasks:
            try:
                x, y, w, h = (float(v) for v in r["bbox"])
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{path}: record {n} has a bbox that is not [x, y, w, h]: {r['bbox']!r}") from e
        else:  # masks only: the boxes are the masks' extents
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        per_image[img].append(([x, y, x + w, y + h], score, dataset.cat_id_to_label[cat], rle))
    out: dict[int, dict[str, Any]] = {}
    for img, dets in per_image.items():
        # float64: scored as read (a round trip of our own files gives the same numbers)
        out[img] = {"boxes": torch.tensor([d[0] for d in dets], dtype=torch.float64).reshape(-1, 4),
                    "scores": torch.tensor([d[1] for d in dets], dtype=torch.float64),
                    "labels": torch.tensor([d[2] for d in dets], dtype=torch.int64)}
        if "segm" in tasks:
            out[img]["rles"] = [d[3] for d in dets]
    return out
