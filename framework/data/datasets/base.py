"""What every detection dataset shares, whatever its annotation format: one place that turns a row of flat arrays
into a sample, so a fix to decoding, clipping or the sample contract reaches COCO, VOC, Cityscapes and YOLO at once.

A subclass parses its format into per-image arrays and says where they are:

* ``_image_ids`` (one per row), ``_sizes`` ((H, W) per row, from the annotations or image headers),
  ``_file_name(row)`` relative to ``_image_root``;
* ``_offsets``, ``_boxes``, ``_labels``: the objects of row ``r`` are ``_boxes[_offsets[r]:_offsets[r + 1]]``
  (XYXY pixels, contiguous labels);
* ``_build_coco()``: its ground truth as a pycocotools index, for the COCO evaluator.

Rows are the samples in order unless ``_row`` maps them (Cityscapes keeps every image of its split in the arrays
and lists the kept ones). Why flat arrays and not a dict per object: the dataset is copied into every loader
worker, and a few arrays stay small and shared where millions of dicts are copied page by page.

The bad-image policy (``dataset.on_bad_image``) needs nothing from a dataset but that it decodes through
:func:`decode_rgb`, which reports a missing or broken file as a ``BadImageError`` and repairs it under
``load_repairing``; :meth:`DetectionDatasetBase._load_image` is that one call. :func:`decode_rgb`,
:func:`detection_sample` (the sample contract) and :func:`coco_index` were first written for COCO and are still
importable from ``coco.py``.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image

from framework.data.bad_images import repair_or_raise
from framework.data.datasets.box_report import CLIPPED, OK, check_boxes
from framework.data.errors import BadImageError
from framework.data.scan import first_line

__all__ = ["DetectionDatasetBase", "box_annotations", "check_class_names", "clip_boxes", "coco_index", "concat",
           "decode_rgb", "detection_sample", "images_with_boxes", "offsets_of"]

Sample = tuple[tv_tensors.Image, dict[str, Any]]


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
                     transforms: Callable | None, masks: np.ndarray | None = None) -> Sample:
    """The sample contract every dataset yields: a uint8 CHW image and its XYXY boxes (already clipped to the
    decoded size), contiguous labels, image id and original size, and, for a mask model, `masks` (N x H x W uint8,
    one per box), then the dataset's transforms."""
    h, w = int(data.shape[-2]), int(data.shape[-1])
    target: dict[str, Any] = {
        "boxes": tv_tensors.BoundingBoxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                          format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(h, w)),
        "labels": torch.as_tensor(labels, dtype=torch.int64).reshape(-1),
        "image_id": image_id,
        "orig_size": (h, w),
    }
    if masks is not None:
        target["masks"] = tv_tensors.Mask(torch.as_tensor(np.asarray(masks, dtype=np.uint8)).reshape(-1, h, w))
    image = tv_tensors.Image(data)
    if transforms:
        image, target = transforms(image, target)
    return image, target



def usable_boxes(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """`boxes` cut to a `height` x `width` image, and which of them (bool) have area left."""
    codes, clipped = check_boxes(boxes, height, width)
    return clipped, (codes == OK) | (codes == CLIPPED)


def clip_boxes(boxes: np.ndarray, labels: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """`boxes` cut to a `height` x `width` image and their `labels`, without the boxes that have no area left."""
    clipped, keep = usable_boxes(boxes, height, width)
    return clipped[keep], labels[keep]


def check_class_names(classes: Sequence[str]) -> list[str]:
    """`classes` as a list of strings; an empty list or a repeated name would make labels ambiguous, so raise."""
    names = [str(c) for c in classes]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"classes must be a non-empty list of distinct names, got {names}")
    return names


def concat(parts: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """`parts` end to end, or an empty array of `shape` when there are none (np.concatenate refuses [])."""
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(shape, dtype)


def offsets_of(counts: Any) -> np.ndarray:
    """Offsets (len(counts) + 1,) int64 of consecutive groups of the given sizes: group i is [o[i], o[i + 1])."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def images_with_boxes(img_of: np.ndarray, n: int) -> np.ndarray:
    """Bool (n,): which of `n` images own at least one of the boxes whose image indices are `img_of` (what
    ``filter_empty`` keeps)."""
    return np.bincount(img_of, minlength=n) > 0


def box_annotations(image_id: int, boxes: Sequence[Sequence[float]], labels: Sequence[int], first_id: int,
                    areas: Sequence[float] | None = None, iscrowd: Sequence[Any] | int = 0) -> list[dict[str, Any]]:
    """COCO ``annotations`` records of one image's XYXY `boxes` (category id = label + 1, ids from `first_id`).

    ``area`` is the box's unless `areas` gives it (a mask's pixel count); `iscrowd` is one flag for all or one per box.
    """
    flags = [iscrowd] * len(labels) if isinstance(iscrowd, int) else iscrowd
    anns = []
    for k, ((x0, y0, x1, y1), label, crowd) in enumerate(zip(boxes, labels, flags)):
        anns.append({
            "id": first_id + k,
            "image_id": image_id,
            "category_id": int(label) + 1,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": float(areas[k]) if areas is not None else (x1 - x0) * (y1 - y0),
            "iscrowd": int(crowd),
        })
    return anns


class DetectionDatasetBase(torch.utils.data.Dataset):
    """Samples in the framework's contract (``image``, ``target``) from per-image arrays; see the module docstring
    for what a subclass provides. Subclasses satisfy :class:`framework.protocols.DetectionDataset`, which a dataset
    of one's own may also meet without this class.

    Holds the class table (``classes``, ``num_classes``, and the mapping between contiguous labels and the
    dataset's category ids that evaluators use), the lazily built pycocotools index (:attr:`coco`, never sent to
    loader workers), and ``__getitem__``: decode, clip the boxes to the decoded size, build the target, transform.
    """

    transforms: Callable | None
    box_report: dict[str, int]
    _image_root: Path
    _image_ids: np.ndarray
    _sizes: np.ndarray
    _offsets: np.ndarray
    _boxes: np.ndarray
    _labels: np.ndarray
    _coco: COCO | None = None

    # ------------------------------------------------------------------ classes

    def _set_classes(self, classes: Sequence[str], cat_ids: Sequence[int] | None = None) -> None:
        """Label ``i`` is ``classes[i]`` and category ``cat_ids[i]`` (``1..K`` unless the format has its own ids,
        as COCO files do), so detections can be mapped back to the ids the ground truth uses."""
        self.classes: list[str] = list(classes)
        self.num_classes: int = len(self.classes)
        self.cat_ids: list[int] = list(cat_ids) if cat_ids is not None else list(range(1, self.num_classes + 1))
        self.label_to_cat_id: list[int] = list(self.cat_ids)
        self.cat_id_to_label: dict[int, int] = {c: i for i, c in enumerate(self.cat_ids)}

    # ------------------------------------------------------------------ rows

    def __len__(self) -> int:
        return len(self._image_ids)

    def _row(self, index: int) -> int:
        """The array row of sample `index`: negative indices count from the end, others past it raise IndexError."""
        return range(len(self))[index]

    @property
    def ids(self) -> list[Any]:
        """Image ids of the samples, in order. A new list on each access: index it once."""
        return self._image_ids.tolist()

    def image_id(self, index: int) -> int:
        return int(self._image_ids[self._row(index)])

    def _file_name(self, row: int) -> str:
        raise NotImplementedError

    def image_path(self, index: int) -> Path:
        """The image file of sample `index` (what dataset scans check)."""
        return self._image_root / self._file_name(self._row(index))

    def _info(self, row: int) -> dict[str, Any]:
        h, w = self._sizes[row]
        return {"id": int(self._image_ids[row]), "file_name": self._file_name(row), "height": int(h), "width": int(w)}

    def get_image_info(self, index: int) -> dict[str, Any]:
        """Image record (id, file_name relative to the image folder, height, width) without decoding the image, so
        samplers can group by aspect ratio cheaply."""
        return self._info(self._row(index))

    def _objects(self, row: int) -> slice:
        return slice(self._offsets[row], self._offsets[row + 1])

    def _ground_truth(self, row: int) -> dict[str, Any]:
        """The part of ``get_annotation`` every format has; copies, so the evaluator cannot write into the arrays."""
        s = self._objects(row)
        return {"image_id": int(self._image_ids[row]), "boxes": self._boxes[s].copy(),
                "labels": self._labels[s].copy()}

    # ------------------------------------------------------------------ ground truth for the evaluator

    @property
    def coco(self) -> COCO:
        """The ground truth as a pycocotools ``COCO`` index, for the COCO evaluator. Built on first use, since
        training workers never need it, and not pickled."""
        if self._coco is None:
            self._coco = self._build_coco()
        return self._coco

    def _build_coco(self) -> COCO:
        raise NotImplementedError

    def _categories(self, supercategory: Callable[[str], str]) -> list[dict[str, Any]]:
        return [{"id": c, "name": n, "supercategory": supercategory(n)} for c, n in zip(self.cat_ids, self.classes)]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_coco"] = None  # rebuilt on demand; loader workers only need the arrays
        return state

    # ------------------------------------------------------------------ samples

    def _describe(self, row: int) -> str:
        """How error messages name the image of `row` besides its path."""
        return f"image_id={int(self._image_ids[row])}"

    def _load_image(self, row: int) -> torch.Tensor:
        return decode_rgb(self._image_root / self._file_name(row), self._describe(row))

    def _training_boxes(self, row: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The boxes and labels of `row` that become training targets on the decoded image: clipped to its size
        (the size the annotations give may be wrong), those with nothing left inside dropped."""
        s = self._objects(row)
        return clip_boxes(self._boxes[s], self._labels[s], height, width)

    def _training_instances(self, row: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The training boxes and labels with their instance masks (uint8 [N, h, w], aligned with the boxes) of an
        image decoded at h × w: what `__getitem__` gives when the dataset was built with `with_masks=True`. A
        problem found only now (a mask file of the wrong size) raises `BadImageError`, which `on_bad_image` handles."""
        raise NotImplementedError(f"{type(self).__name__} has no instance masks")

    def __getitem__(self, index: int) -> Sample:
        row = self._row(index)
        data = self._load_image(row)
        h, w = int(data.shape[-2]), int(data.shape[-1])
        if getattr(self, "with_masks", False):
            boxes, labels, masks = self._training_instances(row, h, w)
        else:
            (boxes, labels), masks = self._training_boxes(row, h, w), None
        return detection_sample(data, boxes, labels, int(self._image_ids[row]), self.transforms, masks=masks)

    def _repr_fields(self) -> dict[str, Any]:
        """What ``repr`` shows, in order; subclasses put where the data comes from first."""
        return {"images": len(self), "classes": self.num_classes}

    def __repr__(self) -> str:
        fields = self._repr_fields()
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

