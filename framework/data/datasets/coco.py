"""COCO-format detection dataset.

Reads any folder laid out like COCO (an ``instances_*.json`` annotation file plus an
image folder) and yields samples in the framework's contract: a uint8 CHW
``tv_tensors.Image`` and a target dict whose boxes are XYXY absolute pixels and whose
labels are contiguous ``0..K-1``. The dataset owns the mapping between those
contiguous labels and the (often sparse) COCO category ids so that evaluators can map
detections back without guessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from pycocotools.coco import COCO

# coco_index, decode_rgb and detection_sample are shared by every dataset and live in base.py; imported from here too
from framework.data.datasets.base import (DetectionDatasetBase, clip_boxes, coco_index, decode_rgb, detection_sample,
                                          images_with_boxes, usable_boxes)
from framework.data.datasets.coco_tables import CocoTables, box_area, load_coco_json, read_coco_tables
from framework.data.datasets.roots import missing_path_error
from framework.data.datasets.segmentation import decode_segmentation
from framework.data.errors import BadImageError, DatasetError, DatasetNotFoundError

__all__ = ["CocoDetection", "DatasetNotFoundError", "coco_index", "decode_rgb", "detection_sample", "layout_hint"]


def _resolve(root: Path, path: str) -> Path:
    """Paths in configs are relative to the dataset root unless absolute."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


COCO_ADVICE = ("Point the config at your copy with `dataset.root=/path/to/coco` (and `dataset.train.ann_file=…` / "
               "`dataset.train.img_dir=…`, same for `val`, if your names differ).")


def layout_hint(root: Path, ann_file: str, img_dir: str, advice: str = COCO_ADVICE) -> str:
    """Render the expected folder layout as a small tree for error messages, then `advice` (what fixes it)."""
    ann, img = Path(ann_file), Path(img_dir)
    # Each node: (label, children). Relative paths hang off the root; absolute ones stand alone.
    nodes: list[tuple[str, list[str]]] = []
    outside: list[str] = []
    if ann.is_absolute():
        outside.append(str(ann))
    elif len(ann.parts) > 1:
        nodes.append((str(ann.parent) + "/", [ann.name]))
    else:
        nodes.append((ann.name, []))
    if img.is_absolute():
        outside.append(f"{img}/  (image files)")
    else:
        nodes.append((str(img) + "/", ["000000000001.jpg", "…"]))

    lines = ["Expected layout:"]
    if nodes:
        lines.append(f"  {root}/")
        for i, (label, children) in enumerate(nodes):
            last = i == len(nodes) - 1
            lines.append("  " + ("└── " if last else "├── ") + label)
            indent = "  " + ("    " if last else "│   ")
            for j, child in enumerate(children):
                lines.append(indent + ("└── " if j == len(children) - 1 else "├── ") + child)
    lines += [f"  {o}" for o in outside]
    lines.append(advice)
    return "\n".join(lines)


class CocoDetection(DetectionDatasetBase):
    """Detection samples from a COCO-layout folder.

    Crowd annotations are left out of ``boxes``/``labels``: pycocotools reads them
    from the ground-truth file at evaluation time and treats them as ignore regions,
    so training never sees them as positives. Boxes are clipped to the image and
    degenerate ones (zero or negative size, NaN/inf, outside the image) dropped when the
    dataset is built, counted in ``box_report`` and reported in one warning, because every
    downstream consumer (assigners, losses, augmentations) assumes positive-area boxes.

    The annotations are held in flat numpy arrays (see
    :mod:`~framework.data.datasets.coco_tables`), not in pycocotools' dict-of-dicts index,
    so forked loader workers share them instead of each copying them page by page. The
    pycocotools index the evaluator needs is :attr:`coco`, built from the file on first use
    and never pickled.

    ``with_masks=True`` (a mask model's data) adds ``masks`` to each target, decoded per sample from the
    segmentations (kept as packed JSON text); every segmentation is checked when the file is read, and a bad one,
    or an annotation of an image not in 'images', stops the build naming the file and the annotation id, unless
    ``on_bad_image="skip"`` (``dataset.on_bad_image``): then it is left out of training and of :attr:`coco`, and
    counted in ``box_report["dropped_bad_mask"]``.
    """

    def __init__(
        self,
        root: str,
        ann_file: str,
        img_dir: str,
        transforms: Callable | None = None,
        filter_empty: bool = False,
        with_masks: bool = False,
        on_bad_image: str = "error",
    ) -> None:
        self.root = Path(root).expanduser()
        ann_path = _resolve(self.root, ann_file)
        img_path = _resolve(self.root, img_dir)
        hint = layout_hint(self.root, ann_file, img_dir)
        needs_root = not (Path(ann_file).is_absolute() and Path(img_dir).is_absolute())
        if needs_root and not self.root.is_dir():
            raise missing_path_error(self.root, "Dataset root", hint)
        if not ann_path.is_file():
            raise missing_path_error(ann_path, "Annotation file", hint)
        if not img_path.is_dir():
            raise missing_path_error(img_path, "Image folder", hint)

        self.ann_file: str = str(ann_path.resolve())
        self.img_dir: Path = img_path
        self._image_root = img_path
        self.transforms = transforms

        self.with_masks = with_masks  # set by a mask model's config; a box model never reads the segmentations
        tables = read_coco_tables(ann_path, img_path, with_masks=with_masks, on_bad_image=on_bad_image)
        self.box_report: dict[str, int] = tables.box_report
        self._set_classes(tables.classes, tables.cat_ids)
        if filter_empty:
            n = len(tables.image_ids)
            trainable = np.repeat(np.arange(n), np.diff(tables.offsets))[~tables.iscrowd]
            tables = tables.select(images_with_boxes(trainable, n))
        self._tables: CocoTables = tables

    # The tables are the per-image arrays DetectionDatasetBase reads.
    _image_ids = property(lambda self: self._tables.image_ids)
    _sizes = property(lambda self: self._tables.sizes)
    _offsets = property(lambda self: self._tables.offsets)
    _boxes = property(lambda self: self._tables.boxes)
    _labels = property(lambda self: self._tables.labels)

    def _file_name(self, row: int) -> str:
        return self._tables.file_name(row)

    def _build_coco(self) -> COCO:
        """The annotation file as written (crowd regions included).

        Annotations without ``iscrowd`` or ``area`` get 0 and the box's area, as pycocotools' ``loadRes`` does for
        results: its evaluation reads both and would fail on the first image without them.
        """
        data = load_coco_json(Path(self.ann_file))
        dropped = self._tables.bad_mask_ids
        if dropped is not None and len(dropped):  # left out for a bad mask (on_bad_image=skip): not gradable either
            gone = set(dropped.tolist())
            data["annotations"] = [a for a in data.get("annotations", []) if a.get("id") not in gone]
        for ann in data.get("annotations", []):
            ann.setdefault("iscrowd", 0)
            if "area" not in ann:
                ann["area"] = box_area(ann["bbox"])
        return coco_index(data)

    def _training_boxes(self, row: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Without the crowd regions, which pycocotools ignores rather than counts as objects to find."""
        s = self._objects(row)
        crowd = self._tables.iscrowd[s]
        return clip_boxes(self._boxes[s][~crowd], self._labels[s][~crowd], height, width)

    def _training_instances(self, row: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self._objects(row)
        rows = np.arange(s.start, s.stop)[~self._tables.iscrowd[s]]
        boxes, keep = usable_boxes(self._boxes[rows], h, w)
        rows, image_id = rows[keep], int(self._image_ids[row])  # the image id, for error messages
        masks = np.zeros((len(rows), h, w), dtype=np.uint8)
        for i, r in enumerate(rows):
            where = f"{self.ann_file}: annotation {int(self._tables.ann_ids[r])} of image {image_id}"
            try:
                masks[i] = decode_segmentation(self._tables.segmentation(int(r)), h, w, where)
            except DatasetError as e:  # an RLE of the size 'images' gives, on a file of another size
                raise BadImageError(self._image_root / self._file_name(row), str(e)) from None
        return boxes[keep], self._labels[rows], masks

    def _repr_fields(self) -> dict[str, Any]:
        return {"ann_file": self.ann_file, **super()._repr_fields()}
