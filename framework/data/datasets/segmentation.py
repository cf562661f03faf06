"""Instance masks from COCO-style segmentations: polygons, uncompressed RLE (crowd regions) and compressed RLE.

Checked once when the annotations are read, so that a bad one stops the run before training with the file and the
annotation id, never mid-epoch; decoded per sample through `pycocotools.mask`, so a dataset keeps only the compact
form (one packed buffer of the JSON text) and a box model, which never asks for masks, pays nothing.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from framework.data.errors import DatasetError


_NUMBERS = frozenset({int, float})  # what JSON numbers parse to (not bool, a subclass of int)


def check_segmentation(segm: Any, where: str, size: tuple[int, int] | None) -> None:
    """Raise DatasetError unless `segm` is a list of polygons (each an even number, at least 6, of coordinates) or
    an RLE dict whose `size` is the image's (`size`, (height, width), when known)."""
    if isinstance(segm, list):
        if not segm:
            raise DatasetError(f"{where}: 'segmentation' is an empty list; give at least one polygon "
                               "[x1, y1, x2, y2, x3, y3, …]")
        for i, poly in enumerate(segm):
            if not isinstance(poly, list) or not _NUMBERS.issuperset(map(type, poly)):  # C speed: COCO has ~10^8
                raise DatasetError(f"{where}: segmentation polygon {i} is not a list of numbers")
            if len(poly) % 2:
                raise DatasetError(f"{where}: segmentation polygon {i} has an odd number of coordinates "
                                   f"({len(poly)}); each point is an x and a y")
            if len(poly) < 6:
                raise DatasetError(f"{where}: segmentation polygon {i} has {len(poly) // 2} point(s); a polygon "
                                   "needs at least 3")
        return
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        rle_size = segm["size"]
        if not (isinstance(rle_size, list) and len(rle_size) == 2 and all(isinstance(v, int) for v in rle_size)):
            raise DatasetError(f"{where}: RLE 'size' must be [height, width], got {rle_size!r}")
        if size is not None and tuple(rle_size) != tuple(size):
            raise DatasetError(f"{where}: its RLE is {rle_size[0]}x{rle_size[1]} (height x width) but the image is "
                               f"{size[0]}x{size[1]}; the mask must have the image's size")
        if not isinstance(segm["counts"], (str, list)):
            raise DatasetError(f"{where}: RLE 'counts' must be a string (compressed) or a list of run lengths")
        return
    raise DatasetError(f"{where}: 'segmentation' must be a list of polygons or an RLE "
                       "{'size': [h, w], 'counts': …}")


def decode_segmentation(segm: Any, height: int, width: int, where: str) -> np.ndarray:
    """The (height, width) uint8 mask of one annotation (polygons are drawn at this size)."""
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    else:
        if tuple(segm["size"]) != (height, width):
            raise DatasetError(f"{where}: its RLE is {segm['size'][0]}x{segm['size'][1]} but the decoded image is "
                               f"{height}x{width}; the mask must have the image's size")
        rle = mask_utils.frPyObjects(segm, height, width) if isinstance(segm["counts"], list) else segm
    return mask_utils.decode(rle).astype(np.uint8)


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """A (height, width) 0/1 mask as a COCO compressed RLE with text `counts` (what a JSON file or a pycocotools
    index holds)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def encode_segmentations(segms: list[Any]) -> list[str]:
    """The compact form a dataset keeps: each segmentation's JSON text (packed into one buffer by the caller)."""
    return [json.dumps(s, separators=(",", ":")) for s in segms]
