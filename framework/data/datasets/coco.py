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
import json
from pathlib import Path
from typing import Any, Callable

import torch
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image

from framework.data.errors import BadImageError, DatasetError

__all__ = ["CocoDetection", "DatasetNotFoundError", "coco_index", "decode_rgb", "detection_sample"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder or file is missing.

    Subclasses ``FileNotFoundError`` so generic handlers still catch it, while the
    message carries the expected layout and the config override that fixes it —
    the most common first-run failure is simply a wrong ``dataset.root``.
    """


def _resolve(root: Path, path: str) -> Path:
    """Paths in configs are relative to the dataset root unless absolute."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def _layout_hint(root: Path, ann_file: str, img_dir: str) -> str:
    """Render the expected folder layout as a small tree for error messages."""
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
    lines.append(
        "Point the config at your copy with `dataset.root=/path/to/coco` "
        "(and `dataset.train.ann_file=…` / `dataset.train.img_dir=…`, same for `val`, if your names differ)."
    )
    return "\n".join(lines)


def _load_json(path: Path) -> dict[str, Any]:
    """Parse the annotation file ourselves so a syntax error names the file and position.

    ``pycocotools`` would raise a bare ``JSONDecodeError`` that does not say which of
    several annotation files was broken.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"Could not parse COCO annotation file {path}: {e.msg} "
            f"at line {e.lineno}, column {e.colno}"
        ) from e
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise ValueError(
            f"{path} is not a COCO detection annotation file: expected a JSON object "
            "with at least 'images' and 'categories' keys"
        )
    return data


def coco_index(data: dict[str, Any]) -> COCO:
    """A pycocotools index over an annotation dict (a file's, or one a loader builds), without its prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


def decode_rgb(path: Path, what: str) -> torch.Tensor:
    """An image file as uint8 RGB CHW; a missing or undecodable file is reported with its path and `what` (its id)."""
    if not path.is_file():
        raise BadImageError(path, f"the file ({what}) does not exist")
    try:
        return decode_image(str(path), mode=ImageReadMode.RGB)
    except Exception as e:  # torchvision raises RuntimeError/ValueError variously
        raise BadImageError(path, f"it cannot be decoded ({what}): {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e


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
    degenerate ones dropped here, because every downstream consumer (assigners,
    losses, augmentations) assumes positive-area boxes.
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
        hint = _layout_hint(self.root, ann_file, img_dir)
        needs_root = not (Path(ann_file).is_absolute() and Path(img_dir).is_absolute())
        if needs_root and not self.root.is_dir():
            raise DatasetNotFoundError(f"Dataset root {self.root} does not exist.\n{hint}")
        if not ann_path.is_file():
            raise DatasetNotFoundError(f"Annotation file {ann_path} does not exist.\n{hint}")
        if not img_path.is_dir():
            raise DatasetNotFoundError(f"Image folder {img_path} does not exist.\n{hint}")

        self.ann_file: str = str(ann_path.resolve())
        self.img_dir: Path = img_path
        self.transforms = transforms

        coco = coco_index(_load_json(ann_path))
        self.coco: COCO = coco

        self.cat_ids: list[int] = sorted(int(c) for c in coco.getCatIds())
        self.classes: list[str] = [coco.cats[c]["name"] for c in self.cat_ids]
        self.cat_id_to_label: dict[int, int] = {c: i for i, c in enumerate(self.cat_ids)}
        self.label_to_cat_id: list[int] = list(self.cat_ids)
        self.num_classes: int = len(self.cat_ids)

        ids = sorted(int(i) for i in coco.imgs.keys())
        if filter_empty:
            ids = [i for i in ids if len(self._load_boxes(i)[1]) > 0]
        self.ids: list[int] = ids

    def __len__(self) -> int:
        return len(self.ids)

    def get_image_info(self, index: int) -> dict[str, Any]:
        """Image record (file_name, height, width, …) without decoding the image.

        Lets samplers group by aspect ratio cheaply.
        """
        return self.coco.imgs[self.ids[index]]

    def _image_path(self, img_id: int) -> Path:
        return self.img_dir / self.coco.imgs[img_id]["file_name"]

    def image_path(self, index: int) -> Path:
        """The image file of sample `index` (what dataset scans check)."""
        return self._image_path(self.ids[index])

    def _load_boxes(
        self, img_id: int, size: tuple[int, int] | None = None
    ) -> tuple[list[list[float]], list[int]]:
        """Usable XYXY boxes and contiguous labels of one image.

        ``size`` is the decoded (H, W) used for clipping; without it the size recorded in
        the annotation file is used (enough for ``filter_empty``).
        """
        if size is None:
            info = self.coco.imgs[img_id]
            size = (int(info["height"]), int(info["width"]))
        h, w = size
        boxes: list[list[float]] = []
        labels: list[int] = []
        for ann in self.coco.imgToAnns.get(img_id, []):
            if ann.get("iscrowd", 0):
                continue
            cat = int(ann["category_id"])
            if cat not in self.cat_id_to_label:
                raise ValueError(
                    f"{self.ann_file}: annotation {ann.get('id')} of image {img_id} has "
                    f"category_id {cat}, which is not in 'categories'"
                )
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            x1, y1 = min(max(x, 0.0), w), min(max(y, 0.0), h)
            x2, y2 = min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)
            if x2 <= x1 or y2 <= y1:
                continue
            boxes.append([x1, y1, x2, y2])
            labels.append(self.cat_id_to_label[cat])
        return boxes, labels

    def _load_image(self, img_id: int) -> torch.Tensor:
        return decode_rgb(self._image_path(img_id), f"image_id={img_id}")

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        img_id = self.ids[index]
        data = self._load_image(img_id)
        # Clip to the decoded size: it is what the boxes will be drawn on from now on.
        boxes, labels = self._load_boxes(img_id, (int(data.shape[-2]), int(data.shape[-1])))
        return detection_sample(data, boxes, labels, img_id, self.transforms)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(ann_file={self.ann_file!r}, images={len(self)}, "
            f"classes={self.num_classes})"
        )

