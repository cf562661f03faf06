"""A COCO annotation file read into a few flat numpy arrays, every malformed field reported with its position.

Why arrays: the dataset is copied into every forked loader worker. pycocotools' index is a dict per image and per
annotation, and each read of one bumps a reference count (and the cyclic garbage collector walks them all), so the
pages holding them are copied into every worker, one after the other: a COCO-sized index costs gigabytes over a few
workers. Flat arrays are a handful of objects whose buffers are never written, so they stay shared.

Why validate here: a file is read once, before training, so this is where a malformed annotation can be named by
file and position (``DatasetError``) instead of surfacing as a ``KeyError`` in a loader worker hours later.
"""
from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from framework.data.datasets.bad_masks import MaskProblems
from framework.data.datasets.box_report import CLIPPED, OK, check_boxes, report_boxes
from framework.data.datasets.segmentation import check_segmentation, encode_segmentations
from framework.data.errors import DatasetError

__all__ = ["CocoTables", "box_area", "load_coco_json", "pack_strings", "read_coco_tables", "unpack_string"]

_I64 = (-(2**63), 2**63 - 1)
_MISSING = object()
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 40
_repr.maxlist = _repr.maxdict = 6
_repr.maxlevel = 2


def _short(value: Any) -> str:
    """A value from the file, as it would be quoted in an error message (never very long)."""
    return _repr.repr(value)


def _is_int(v: Any) -> bool:
    return type(v) is int and _I64[0] <= v <= _I64[1]  # not bool; what fits an int64 array


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def _bad_field(where: str, key: str, value: Any, expected: str) -> DatasetError:
    if value is _MISSING:
        return DatasetError(f"{where} has no '{key}' ({expected})")
    return DatasetError(f"{where} has '{key}': {_short(value)}, expected {expected}")


def _json_type(v: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(v), type(v).__name__)


def load_coco_json(path: Path) -> dict[str, Any]:
    """Parse an annotation file; a syntax error names the file, line and column (pycocotools would raise a bare
    ``JSONDecodeError`` that does not say which of several files was broken)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DatasetError(f"Could not read COCO annotation file {path}: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DatasetError(f"Could not parse COCO annotation file {path}: it is not UTF-8 text (byte "
                           f"0x{raw[e.start]:02x} at line {line}, column {col})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"Could not parse COCO annotation file {path}: {e.msg} "
                           f"at line {e.lineno}, column {e.colno}") from e
    except RecursionError:
        raise DatasetError(f"Could not parse COCO annotation file {path}: it is nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal of more than 4300 digits
        raise DatasetError(f"Could not parse COCO annotation file {path}: {e}") from e
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise DatasetError(f"{path} is not a COCO detection annotation file: expected a JSON object with at least "
                           "'images' and 'categories' keys")
    for key in ("images", "categories", "annotations"):  # annotations may be absent (image-info files)
        if key in data and type(data[key]) is not list:
            raise DatasetError(f"{path}: '{key}' is a {_json_type(data[key])}, expected a list")
    return data


def pack_strings(strings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One uint8 buffer of the UTF-8 strings and their offsets: two objects instead of one per string."""
    encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def unpack_string(buffer: np.ndarray, offsets: np.ndarray, i: int) -> str:
    """String `i` of a `pack_strings` result."""
    return bytes(buffer[offsets[i]:offsets[i + 1]]).decode("utf-8", "surrogatepass")


@dataclass(frozen=True, eq=False)
class CocoTables:
    """Images sorted by id, and their usable annotations grouped by image (in file order within an image)."""

    cat_ids: list[int]
    classes: list[str]
    image_ids: np.ndarray  # (N,) int64, ascending
    sizes: np.ndarray  # (N, 2) int32: (height, width) from the file (or the image header where it has none)
    names: np.ndarray  # uint8 buffer of the UTF-8 file names …
    name_offsets: np.ndarray  # … (N + 1,) int64: file name i is names[name_offsets[i]:name_offsets[i + 1]]
    offsets: np.ndarray  # (N + 1,) int64: annotations of image i are rows offsets[i]:offsets[i + 1]
    boxes: np.ndarray  # (M, 4) float32 XYXY, clipped to the image, positive area
    labels: np.ndarray  # (M,) int32, contiguous 0..K-1
    iscrowd: np.ndarray  # (M,) bool
    box_report: dict[str, int]
    # with_masks: the JSON text of each annotation's segmentation, packed (pack_strings) in row order, and each row's
    # annotation id (for error messages); the ids of the annotations left out for a bad mask (on_bad_image=skip),
    # which the evaluator's index leaves out too. Else None.
    segm: np.ndarray | None = None
    segm_offsets: np.ndarray | None = None
    ann_ids: np.ndarray | None = None
    bad_mask_ids: np.ndarray | None = None

    def segmentation(self, row: int) -> Any:
        """The segmentation of annotation row `row` as written (polygons or RLE)."""
        return json.loads(unpack_string(self.segm, self.segm_offsets, row))

    def file_name(self, i: int) -> str:
        return unpack_string(self.names, self.name_offsets, i)

    def select(self, keep: np.ndarray) -> CocoTables:
        """The tables of the images where `keep` (bool, (N,)) is true."""
        idx = np.flatnonzero(keep)
        counts = np.diff(self.offsets)[idx]
        rows = np.repeat(keep, np.diff(self.offsets))
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        names, name_offsets = pack_strings([self.file_name(int(i)) for i in idx])
        segm = {}
        if self.segm is not None:
            kept = [unpack_string(self.segm, self.segm_offsets, int(r)) for r in np.flatnonzero(rows)]
            segm = dict(zip(("segm", "segm_offsets"), pack_strings(kept)), ann_ids=self.ann_ids[rows])
        return replace(self, image_ids=self.image_ids[idx], sizes=self.sizes[idx], names=names,
                       name_offsets=name_offsets, offsets=offsets, boxes=self.boxes[rows], labels=self.labels[rows],
                       iscrowd=self.iscrowd[rows], **segm)


def _read_categories(cats: list[Any], path: Path) -> tuple[list[int], list[str]]:
    names: dict[int, str] = {}
    for k, cat in enumerate(cats):
        where = f"{path}: categories[{k}]"
        if type(cat) is not dict:
            raise DatasetError(f"{where} is a {_json_type(cat)}, expected an object with 'id' and 'name'")
        cid, name = cat.get("id", _MISSING), cat.get("name", _MISSING)
        if not _is_int(cid):
            raise _bad_field(where, "id", cid, "an integer")
        if type(name) is not str:
            raise _bad_field(f"{path}: category {cid} (categories[{k}])", "name", name, "a string")
        if cid in names:
            raise DatasetError(f"{where}: category id {cid} appears twice in 'categories'")
        names[cid] = name
    ids = sorted(names)
    return ids, [names[c] for c in ids]


def _recorded_size(img: dict[str, Any], key: str, where: str) -> int | None:
    """`height`/`width` of an image record; None when absent, null or 0 (then the image header is read)."""
    v = img.get(key)
    if v is None or (_is_number(v) and v == 0):
        return None
    if not _is_number(v) or not 1 <= v <= 2**31 - 1:  # also rejects NaN
        raise _bad_field(where, key, v, "a positive number of pixels")
    return int(v)


def _header_size(file: Path, where: str) -> tuple[int, int]:
    """(height, width) from the image file's header, for records without a size (no decoding)."""
    try:
        with Image.open(file) as im:
            return int(im.height), int(im.width)
    except Exception as e:  # missing file, unknown format, truncated header…: PIL raises various types
        raise DatasetError(f"{where} has no height/width, and the size of its image {file} cannot be read either: "
                           f"{str(e).strip() or type(e).__name__}") from e


def _read_images(images: list[Any], path: Path, img_dir: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Image ids, file names and (H, W) sizes, sorted by id."""
    ids: list[int] = []
    names: list[str] = []
    sizes: list[tuple[int, int]] = []
    first: dict[int, int] = {}
    for k, img in enumerate(images):
        where = f"{path}: images[{k}]"
        if type(img) is not dict:
            raise DatasetError(f"{where} is a {_json_type(img)}, expected an object with 'id', 'file_name', "
                               "'height' and 'width'")
        iid, name = img.get("id", _MISSING), img.get("file_name", _MISSING)
        if not _is_int(iid):
            raise _bad_field(where, "id", iid, "an integer")
        where = f"{path}: image {iid} (images[{k}])"
        if type(name) is not str or not name:
            raise _bad_field(where, "file_name", name, "a file name relative to the image folder")
        if iid in first:
            raise DatasetError(f"{where}: image id {iid} appears twice in 'images' (also images[{first[iid]}])")
        first[iid] = k
        h, w = _recorded_size(img, "height", where), _recorded_size(img, "width", where)
        if h is None or w is None:
            h, w = _header_size(img_dir / name, where)
        ids.append(iid)
        names.append(name)
        sizes.append((h, w))
    order = sorted(range(len(ids)), key=ids.__getitem__)
    return (np.asarray([ids[i] for i in order], dtype=np.int64), [names[i] for i in order],
            np.asarray([sizes[i] for i in order], dtype=np.int32).reshape(-1, 2))


def _to_float(v: int | float) -> float:
    try:
        return float(v)
    except OverflowError:  # an integer beyond float64: as far outside any image as inf
        return float("inf") if v > 0 else float("-inf")


def box_area(bbox: list[int | float]) -> float:
    """Width x height of a checked XYWH box, as pycocotools' loadRes computes a result's area (inf when huge)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.float64(_to_float(bbox[2])) * np.float64(_to_float(bbox[3])))


def _read_annotations(anns: list[Any], path: Path, label_of: dict[int, int],
                      problems: MaskProblems | None = None) -> tuple[Any, ...]:
    """Per annotation: id, image id, label, iscrowd and XYWH box (float64), every field type-checked; with
    `problems` (a mask model's dataset), also the segmentations, the bad ones recorded there (None in `segms`;
    their sizes are checked against the images by the caller)."""
    ann_ids, image_ids, labels, crowd, bboxes, segms = [], [], [], [], [], []
    for k, ann in enumerate(anns):
        if type(ann) is not dict:
            raise DatasetError(f"{path}: annotations[{k}] is a {_json_type(ann)}, expected an object")
        aid = ann.get("id", _MISSING)
        if not _is_int(aid):
            raise _bad_field(f"{path}: annotations[{k}]", "id", aid, "an integer")
        where = f"{path}: annotation {aid} (annotations[{k}])"
        iid, cat = ann.get("image_id", _MISSING), ann.get("category_id", _MISSING)
        if not _is_int(iid):
            raise _bad_field(where, "image_id", iid, "an integer")
        if not _is_int(cat):
            raise _bad_field(where, "category_id", cat, "an integer")
        if cat not in label_of:
            known = ", ".join(map(str, list(label_of)[:20])) + (", …" if len(label_of) > 20 else "")
            raise DatasetError(f"{where} of image {iid} has category_id {cat}, which is not in 'categories' "
                               f"(ids: {known or 'none'})")
        bbox = ann.get("bbox", _MISSING)
        if type(bbox) is not list or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise _bad_field(where, "bbox", bbox, "[x, y, width, height]: a list of 4 numbers")
        flag = ann.get("iscrowd", 0)
        if not _is_number(flag) or flag not in (0, 1):
            raise _bad_field(where, "iscrowd", flag, "0 or 1")
        if problems is not None:
            segm = ann.get("segmentation")
            try:
                if "segmentation" not in ann:
                    raise DatasetError(f"{where} has no 'segmentation', which a mask model needs (polygons or RLE)")
                check_segmentation(segm, where, None)
            except DatasetError as e:
                problems.add(str(e))
                segm = None
            segms.append(segm)
        ann_ids.append(aid)
        image_ids.append(iid)
        labels.append(label_of[cat])
        crowd.append(bool(flag))
        bboxes.append(bbox)
    try:
        xywh = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    except OverflowError:
        xywh = np.array([[_to_float(v) for v in b] for b in bboxes], dtype=np.float64).reshape(-1, 4)
    return (np.asarray(ann_ids, dtype=np.int64), np.asarray(image_ids, dtype=np.int64),
            np.asarray(labels, dtype=np.int32), np.asarray(crowd, dtype=bool), xywh, segms)


def read_coco_tables(path: Path, img_dir: Path, with_masks: bool = False, on_bad_image: str = "error") -> CocoTables:
    """Read and check `path`; clip or drop unusable boxes of non-crowd annotations (counted, one warning).

    Crowd annotations are kept with their flag (clipped like the others; unusable ones dropped without a count,
    since they are never training targets). Annotations of an image id that is not in 'images' are ignored, as
    pycocotools' evaluation ignores them, and counted as ``dropped_no_image``.

    With `with_masks`, every segmentation is checked (see `check_segmentation`), and an annotation of an image not
    in 'images' is an error too (its mask could be meant for any picture); `on_bad_image=skip` drops them instead,
    counted in ``dropped_bad_mask`` (the orphans in ``dropped_no_image``), see `MaskProblems`.
    """
    data = load_coco_json(path)
    cat_ids, classes = _read_categories(data["categories"], path)
    image_ids, names, sizes = _read_images(data["images"], path, img_dir)
    problems = MaskProblems(str(path), on_bad_image) if with_masks else None
    ann_ids, ann_images, labels, crowd, xywh, segms = _read_annotations(
        data.get("annotations", []), path, {c: i for i, c in enumerate(cat_ids)}, problems)
    del data

    pos = np.searchsorted(image_ids, ann_images)
    pos[pos == len(image_ids)] = 0
    known = (image_ids[pos] == ann_images) if len(image_ids) else np.zeros(len(pos), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    size = sizes[pos] if len(sizes) else np.zeros((len(pos), 2), dtype=np.int32)
    codes, boxes = check_boxes(xyxy, size[:, 0], size[:, 1])

    train = known & ~crowd
    t_ids, t_imgs = ann_ids[train], ann_images[train]
    orphans = int((~known).sum())
    extra = ""
    if orphans and problems is None:  # with masks, they are mask problems (listed by `problems`)
        example = ann_ids[np.argmax(~known)], ann_images[np.argmax(~known)]
        extra = (f"{orphans} annotation{'s' if orphans != 1 else ''} of images not listed in 'images' ignored, e.g. "
                 f"annotation {example[0]} of image {example[1]}")
    report = report_boxes(str(path), codes[train], lambda i: f"image {t_imgs[i]} annotation {t_ids[i]}", extra)
    report["dropped_no_image"] = orphans

    keep = known & ((codes == OK) | (codes == CLIPPED))
    segm: dict[str, np.ndarray] = {}
    if problems is not None:
        bad = np.asarray([s is None for s in segms], dtype=bool).reshape(-1)
        for i in np.flatnonzero(~known):
            problems.add(f"{path}: annotation {ann_ids[i]} is for image {ann_images[i]}, which is not in 'images'",
                         dropped=0)
        for i in np.flatnonzero(known & ~bad):  # an RLE must have its image's size (polygons are drawn at any size)
            if not isinstance(segms[i], dict):
                continue
            try:
                check_segmentation(segms[i], f"{path}: annotation {ann_ids[i]} of image {ann_images[i]}",
                                   tuple(int(v) for v in sizes[pos[i]]))
            except DatasetError as e:
                problems.add(str(e))
                bad[i] = True
        report = problems.finish(report)
        keep &= ~bad
        segm["bad_mask_ids"] = ann_ids[bad]
    order = np.flatnonzero(keep)[np.argsort(pos[keep], kind="stable")]
    offsets = np.zeros(len(image_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(pos[order], minlength=len(image_ids)), out=offsets[1:])
    packed, name_offsets = pack_strings(names)
    if problems is not None:
        segm.update(zip(("segm", "segm_offsets"), pack_strings(encode_segmentations([segms[i] for i in order]))))
        segm["ann_ids"] = ann_ids[order]
    return CocoTables(cat_ids=cat_ids, classes=classes, image_ids=image_ids, sizes=sizes, names=packed,
                      name_offsets=name_offsets, offsets=offsets, boxes=boxes[order], labels=labels[order],
                      iscrowd=crowd[order], box_report=report, **segm)
