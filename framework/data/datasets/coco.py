"""COCO-format detection dataset.

Reads any folder laid out like COCO (an ``instances_*.json`` annotation file plus an
image folder) and yields samples in the framework's contract: a uint8 CHW
``tv_tensors.Image`` and a target dict whose boxes are XYXY absolute pixels and whose
labels are contiguous ``0..K-1``. The dataset owns the mapping between those
contiguous labels and the (often sparse) COCO category ids so that evaluators can map
detections back without guessing.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image

from framework.data.datasets.coco_tables import CocoTables, box_area, load_coco_json, read_coco_tables
from framework.data.bad_images import repair_or_raise
from framework.data.datasets.roots import missing_path_error
from framework.data.errors import BadImageError, DatasetNotFoundError
from framework.data.scan import first_line

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


def coco_index(data: dict[str, Any]) -> COCO:
    """A pycocotools index over an annotation dict (a file's, or one a loader builds), without its prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


def decode_rgb(path: Path, what: str) -> torch.Tensor:
    """An image file as uint8 RGB CHW; a missing or undecodable file is reported with its path and `what` (its id).

    Under `dataset.on_bad_image=repair` (a `load_repairing` call around the dataset's `__getitem__`), a file the
    fast decoder rejects is decoded again as far as its data goes (`repair_or_raise`); sound files never pay for it.
    """
    if not path.is_file():
        raise BadImageError(path, f"the file ({what}) does not exist")
    try:
        return decode_image(str(path), mode=ImageReadMode.RGB)
    except Exception as e:  # torchvision raises RuntimeError/ValueError variously
        return repair_or_raise(path, BadImageError(path, f"it cannot be decoded ({what}): {first_line(e)}"))


def detection_sample(data: torch.Tensor, boxes: Any, labels: Any, image_id: int,
                     transforms: Callable | None) -> tuple[tv_tensors.Image, dict[str, Any]]:
    """The sample contract every dataset yields: a uint8 CHW image and its XYXY boxes (already clipped to the
    decoded size), contiguous labels, image id and original size, then the dataset's transforms."""
    h, w = int(data.shape[-2]), int(data.shape[-1])
    target: dict[str, Any] = {
        "boxes": tv_tensors.BoundingBoxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                          format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(h, w)),
        "labels": torch.as_tensor(labels, dtype=torch.int64).reshape(-1),
        "image_id": image_id,
        "orig_size": (h, w),
    }
    image = tv_tensors.Image(data)
    if transforms:
        image, target = transforms(image, target)
    return image, target


class CocoDetection(torch.utils.data.Dataset):
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
    """

    def __init__(
        self,
        root: str,
        ann_file: str,
        img_dir: str,
        transforms: Callable | None = None,
        filter_empty: bool = False,
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
        self.transforms = transforms

        tables = read_coco_tables(ann_path, img_path)
        self.box_report: dict[str, int] = tables.box_report
        self.cat_ids: list[int] = tables.cat_ids
        self.classes: list[str] = tables.classes
        self.cat_id_to_label: dict[int, int] = {c: i for i, c in enumerate(self.cat_ids)}
        self.label_to_cat_id: list[int] = list(self.cat_ids)
        self.num_classes: int = len(self.cat_ids)
        if filter_empty:
            trainable = np.repeat(np.arange(len(tables.image_ids)), np.diff(tables.offsets))[~tables.iscrowd]
            tables = tables.select(np.bincount(trainable, minlength=len(tables.image_ids)) > 0)
        self._tables: CocoTables = tables
        self._coco: COCO | None = None

    @property
    def ids(self) -> list[int]:
        """COCO image ids of the samples, in order (ascending). A new list on each access: index it once."""
        return self._tables.image_ids.tolist()

    def __len__(self) -> int:
        return len(self._tables.image_ids)

    def _pos(self, index: int) -> int:
        """`index` as a row of the arrays: negative ones count from the end, others past it raise IndexError."""
        return range(len(self._tables.image_ids))[index]

    def image_id(self, index: int) -> int:
        return int(self._tables.image_ids[self._pos(index)])

    def get_image_info(self, index: int) -> dict[str, Any]:
        """Image record (id, file_name, height, width) without decoding the image.

        Lets samplers group by aspect ratio cheaply.
        """
        i = self._pos(index)
        h, w = self._tables.sizes[i]
        return {"id": self.image_id(i), "file_name": self._tables.file_name(i), "height": int(h), "width": int(w)}

    def image_path(self, index: int) -> Path:
        """The image file of sample `index` (what dataset scans check)."""
        return self.img_dir / self._tables.file_name(self._pos(index))

    @property
    def coco(self) -> COCO:
        """The annotation file as a pycocotools ``COCO`` index, for the COCO evaluator (ground truth as written,
        crowd regions included). Built on first use, since training workers never need it, and not pickled.

        Annotations without ``iscrowd`` or ``area`` get 0 and the box's area, as pycocotools' ``loadRes`` does for
        results: its evaluation reads both and would fail on the first image without them.
        """
        if self._coco is None:
            data = load_coco_json(Path(self.ann_file))
            for ann in data.get("annotations", []):
                ann.setdefault("iscrowd", 0)
                if "area" not in ann:
                    ann["area"] = box_area(ann["bbox"])
            self._coco = coco_index(data)
        return self._coco

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_coco"] = None  # rebuilt on demand; loader workers only need the arrays
        return state

    def _load_image(self, index: int) -> torch.Tensor:
        return decode_rgb(self.image_path(index), f"image_id={self.image_id(index)}")

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        t, index = self._tables, self._pos(index)
        data = self._load_image(index)
        h, w = int(data.shape[-2]), int(data.shape[-1])
        s = slice(t.offsets[index], t.offsets[index + 1])
        crowd = t.iscrowd[s]
        # The boxes were clipped to the size in the file; clip again to the decoded size (what they are drawn on
        # from now on), in case the file is wrong about it.
        boxes = t.boxes[s][~crowd]
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return detection_sample(data, boxes[keep], t.labels[s][~crowd][keep], self.image_id(index), self.transforms)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(ann_file={self.ann_file!r}, images={len(self)}, "
            f"classes={self.num_classes})"
        )
