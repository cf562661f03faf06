"""Cityscapes instance-level detection dataset (the 8 "things" classes), read the way mmdetection reads it.

Layout (the official ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` unzipped side by side)::

    root/
    ├── leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    └── gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   (+ _gtFine_polygons.json, unused)

Ground truth comes from the 16-bit ``*_gtFine_instanceIds.png`` images, with Cityscapes' official encoding:

* ``label_id * 1000 + k`` — instance ``k`` (0-based) of a class that has instances (``car`` 26 → 26000, 26001, …);
* ``label_id`` (< 1000) — everything else: stuff (road 7, building 11, …) and the regions of an instance class
  that the annotators could not split into instances ("cargroup", "persongroup", …: pixel value 26, 24, …).

What becomes what (as in mmdetection's ``cityscapes.py`` converter and ``CityscapesDataset``):

* each instance of the 8 evaluated classes → one box: the tight box of its pixels in continuous XYXY coordinates
  (pixel ``i`` covers ``[i, i+1)``, so ``x1 = max_x + 1``), label ``0..7`` in :data:`CITYSCAPES_CLASSES` order;
* the group region of one of the 8 classes → a crowd region: not a training box, but in :attr:`coco` with
  ``iscrowd=1`` (its box, ``area`` = its pixel count), so pycocotools ignores detections that fall on it;
* ``caravan`` and ``trailer`` have instances but are ``ignoreInEval`` in Cityscapes: skipped, like stuff.

Masks. ``with_masks=True`` (a mask model's data) adds ``masks`` to each target: instance ``label_id * 1000 + k``
is the pixels of that value, cut from the instance PNG decoded per sample (the dataset keeps each instance's value,
never a mask). :attr:`coco` then carries each instance's and each group region's ``segmentation`` (compressed RLE,
read from the PNGs on its first use). An instance PNG whose size is not its image's stops the build naming both
files and the image id, or, under ``on_bad_image="skip"``, leaves the image out (its instances counted in
``box_report["dropped_bad_mask"]``).

Annotations are scanned once at construction (each instance PNG decoded once, on a few threads) into flat numpy
arrays — never a dict per object — because the dataset is copied into every loader worker. The pycocotools index
the COCO evaluator needs is built from those arrays on first use of :attr:`coco` (validation only).

No Cityscapes download at hand? ``python tools/make_shapes.py --layout cityscapes`` writes the synthetic shapes
in this layout (see :mod:`framework.data.datasets.shapes_cityscapes`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from framework.data.datasets.bad_masks import MaskProblems
from framework.data.datasets.base import DetectionDatasetBase, box_annotations, coco_index, concat, offsets_of
from framework.data.datasets.box_report import count_boxes
from framework.data.datasets.roots import missing_path_error
from framework.data.datasets.segmentation import encode_mask
from framework.data.errors import BadImageError, DatasetError, DatasetNotFoundError

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_INSTANCE_LABELS",
    "CityscapesDetection",
    "CityscapesLabel",
    "LEFT_SUFFIX",
    "INSTANCE_IDS_SUFFIX",
    "POLYGONS_SUFFIX",
]


class CityscapesLabel(NamedTuple):
    """One row of Cityscapes' label table (``cityscapesscripts.helpers.labels``), the fields we use."""

    name: str
    id: int  # the label id written in *_labelIds.png / *_instanceIds.png
    has_instances: bool  # instances encoded as id * 1000 + k
    ignore_in_eval: bool
    color: tuple[int, int, int]  # the official colour (for drawing)


#: Every Cityscapes label that has instances, in id order. The 8 not ignored in evaluation are the detection
#: classes; caravan and trailer are listed so their instance pixels are recognised (and skipped, as mmdetection
#: does) rather than mistaken for corrupt data. Checked against cityscapesscripts in the tests.
CITYSCAPES_INSTANCE_LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("person", 24, True, False, (220, 20, 60)),
    CityscapesLabel("rider", 25, True, False, (255, 0, 0)),
    CityscapesLabel("car", 26, True, False, (0, 0, 142)),
    CityscapesLabel("truck", 27, True, False, (0, 0, 70)),
    CityscapesLabel("bus", 28, True, False, (0, 60, 100)),
    CityscapesLabel("caravan", 29, True, True, (0, 0, 90)),
    CityscapesLabel("trailer", 30, True, True, (0, 0, 110)),
    CityscapesLabel("train", 31, True, False, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, True, False, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, True, False, (119, 11, 32)),
)

_CLASS_LABELS = tuple(lb for lb in CITYSCAPES_INSTANCE_LABELS if not lb.ignore_in_eval)
#: The 8 detection classes; label ``i`` of a target is ``CITYSCAPES_CLASSES[i]``, COCO category id ``i + 1``.
CITYSCAPES_CLASSES: tuple[str, ...] = tuple(lb.name for lb in _CLASS_LABELS)
_SUPERCATEGORY = {"person": "human", "rider": "human"}  # the rest are Cityscapes' "vehicle" category

_MAX_LABEL_ID = 33  # ids 0..33 are Cityscapes' labels (license plate, -1, is never drawn into the PNGs)
_MIN_THING_ID = min(lb.id for lb in CITYSCAPES_INSTANCE_LABELS)  # 24: smaller values are stuff, skipped first
# label id -> contiguous label 0..7, -1 for everything else (stuff, caravan, trailer)
_ID_TO_LABEL = np.full(_MAX_LABEL_ID + 1, -1, dtype=np.int64)
for _i, _lb in enumerate(_CLASS_LABELS):
    _ID_TO_LABEL[_lb.id] = _i
_HAS_INSTANCES = np.zeros(_MAX_LABEL_ID + 1, dtype=bool)
_HAS_INSTANCES[[lb.id for lb in CITYSCAPES_INSTANCE_LABELS]] = True

LEFT_SUFFIX = "_leftImg8bit.png"
INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"
POLYGONS_SUFFIX = "_gtFine_polygons.json"
_ID_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit greyscale PNG, as Pillow versions open it
_SPLITS = ("train", "val")


def _layout_hint(root: Path, split: str) -> str:
    """The expected folder tree and the override that points the config at it."""
    return "\n".join([
        "Expected layout (leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip unzipped into one folder):",
        f"  {root}/",
        "  ├── leftImg8bit/",
        f"  │   └── {split}/",
        "  │       └── <city>/",
        f"  │           └── <city>_<seq>_<frame>{LEFT_SUFFIX} …",
        "  └── gtFine/",
        f"      └── {split}/",
        "          └── <city>/",
        f"              ├── <city>_<seq>_<frame>{INSTANCE_IDS_SUFFIX} …",
        f"              └── <city>_<seq>_<frame>{POLYGONS_SUFFIX} …   (optional)",
        "Point the config at your copy with `dataset.root=/path/to/cityscapes` (the folder that holds leftImg8bit/ "
        "and gtFine/). To try the loader without the download: `python tools/make_shapes.py --layout cityscapes` "
        "and `dataset.root=data/shapes_cityscapes`.",
    ])


def _misplaced_root_hint(root: Path) -> str:
    """Catch a root one level too high (the unzip folder's parent) or too low (leftImg8bit/ or gtFine/ itself)."""
    if (root / "cityscapes" / "leftImg8bit").is_dir():
        return f" It contains cityscapes/leftImg8bit: did you mean `dataset.root={root / 'cityscapes'}`?"
    if root.name in ("leftImg8bit", "gtFine") or any((root / s).is_dir() for s in (*_SPLITS, "test")):
        return f" {root} looks like leftImg8bit/ or gtFine/ itself: did you mean `dataset.root={root.parent}`?"
    return ""


def _read_instance_ids(path: Path) -> np.ndarray:
    """The (H, W) integer array of one ``*_gtFine_instanceIds.png``; every failure names the file."""
    try:
        img = Image.open(path)
    except Exception as e:  # PIL raises OSError, SyntaxError, zlib errors… depending on the damage
        raise DatasetError(f"Could not decode instance-id PNG {path}: {e}") from e
    with img:
        try:
            img.load()
        except Exception as e:
            raise DatasetError(f"Could not decode instance-id PNG {path}: {e}") from e
        if img.mode not in _ID_MODES:
            raise DatasetError(
                f"{path} has image mode {img.mode!r}, expected a 16-bit greyscale PNG ({INSTANCE_IDS_SUFFIX}: "
                "label_id * 1000 + instance for instances, label_id elsewhere)"
            )
        return np.asarray(img)


def _header_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image from its header (no decoding)."""
    try:
        with Image.open(path) as img:
            return int(img.height), int(img.width)
    except Exception as e:
        raise DatasetError(f"Could not read image {path}: {e}") from e


class _Scanned(NamedTuple):
    height: int
    width: int
    boxes: np.ndarray  # (N, 4) float32 XYXY, instances of the 8 classes
    labels: np.ndarray  # (N,) int64 0..7
    areas: np.ndarray  # (N,) int64 pixel counts
    values: np.ndarray  # (N,) int64 their pixel values (label_id * 1000 + k)
    crowd_boxes: np.ndarray  # (M, 4) float32, group regions of the 8 classes
    crowd_labels: np.ndarray  # (M,) int64
    crowd_areas: np.ndarray  # (M,) int64
    crowd_values: np.ndarray  # (M,) int64 their pixel values (label_id)
    problem: str | None = None  # why the instance PNG cannot be used with its image (then no objects)…
    unused: int = 0  # … and how many instances it holds


def _objects_from_ids(ids: np.ndarray, path: Path) -> tuple[np.ndarray, ...]:
    """Boxes, labels, areas and pixel values of the instances, then of the group regions, encoded in one instance-id
    array."""
    h, w = ids.shape
    flat = ids.reshape(-1)
    sel = np.flatnonzero(flat >= _MIN_THING_ID)  # most pixels are stuff: drop them before anything costlier
    vals = flat[sel].astype(np.int64)
    label_ids = np.where(vals >= 1000, vals // 1000, vals)
    bad = label_ids > _MAX_LABEL_ID  # e.g. 7001: instances of a stuff class; or 500: no such label
    bad |= (vals >= 1000) & ~_HAS_INSTANCES[np.minimum(label_ids, _MAX_LABEL_ID)]
    if bad.any():
        v = int(vals[np.argmax(bad)])
        raise DatasetError(
            f"{path}: pixel value {v} is not a Cityscapes id (expected label ids 0..{_MAX_LABEL_ID}, or "
            f"label_id * 1000 + k for a class with instances: "
            f"{', '.join(f'{lb.name} {lb.id}' for lb in CITYSCAPES_INSTANCE_LABELS)})"
        )
    labels = _ID_TO_LABEL[label_ids]
    keep = labels >= 0  # stuff (and caravan/trailer) out
    sel, vals = sel[keep], vals[keep]
    # Present values and each pixel's object index by counting (values are < 34000 now): no sort needed.
    counts = np.bincount(vals)
    uniq = np.flatnonzero(counts)
    compact = np.zeros(len(counts), dtype=np.int64)
    compact[uniq] = np.arange(len(uniq))
    inv = compact[vals]
    ys, xs = np.divmod(sel, w)
    n = len(uniq)
    x0 = np.full(n, w, dtype=np.int64)
    y0 = np.full(n, h, dtype=np.int64)
    x1 = np.full(n, -1, dtype=np.int64)
    y1 = np.full(n, -1, dtype=np.int64)
    np.minimum.at(x0, inv, xs)
    np.minimum.at(y0, inv, ys)
    np.maximum.at(x1, inv, xs)
    np.maximum.at(y1, inv, ys)
    boxes = np.stack([x0, y0, x1 + 1, y1 + 1], axis=1).astype(np.float32)  # continuous: last pixel + 1
    areas = counts[uniq].astype(np.int64)
    ulabels = _ID_TO_LABEL[np.where(uniq >= 1000, uniq // 1000, uniq)]
    inst = uniq >= 1000
    return (boxes[inst], ulabels[inst], areas[inst], uniq[inst], boxes[~inst], ulabels[~inst], areas[~inst],
            uniq[~inst])


def _masks_of(ids: np.ndarray, values: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8: mask ``n`` is where `ids` equals ``values[n]``, compared only inside ``boxes[n]`` (the
    extent of those pixels): a full-image comparison per instance would cost ~2M operations each at Cityscapes'
    2048x1024."""
    masks = np.zeros((len(values), *ids.shape), dtype=np.uint8)
    for m, v, (x0, y0, x1, y1) in zip(masks, values.tolist(), boxes.astype(np.int64).tolist()):
        m[y0:y1, x0:x1] = ids[y0:y1, x0:x1] == v
    return masks


def _scan(left: Path, inst_path: Path, image_id: int) -> _Scanned:
    """One image: its size and objects, from its instance-id PNG (checked against the image header: a mismatch is
    returned as `problem`, with the image's size and no objects)."""
    if not inst_path.is_file():
        raise DatasetNotFoundError(f"Instance-id annotation {inst_path} (for image {left}) does not exist.")
    ids = _read_instance_ids(inst_path)
    h, w = ids.shape
    ih, iw = _header_size(left)
    objects = _objects_from_ids(ids, inst_path)
    if (ih, iw) != (h, w):
        problem = (f"{inst_path} is {w}x{h} but its image {left} (image_id {image_id}) is {iw}x{ih}; they must "
                   "match")
        return _Scanned(ih, iw, *(a[:0] for a in objects), problem=problem, unused=len(objects[1]))
    return _Scanned(h, w, *objects)


class CityscapesDetection(DetectionDatasetBase):
    """Detection samples from a Cityscapes folder: the 8 instance classes, boxes from the instance masks.

    Args:
        root: the folder that holds ``leftImg8bit/`` and ``gtFine/``.
        split: ``train`` | ``val`` (the test split has no public annotations).
        transforms: applied to ``(image, target)``.
        filter_empty: leave out images without any instance of the 8 classes (mmdetection's
            ``filter_empty_gt`` for training); group regions alone do not count.
        with_masks: add ``masks`` to each target (see the module docstring).
        on_bad_image: ``dataset.on_bad_image``; with masks, ``"skip"`` leaves out images whose instance PNG does not
            fit them instead of stopping.

    Samples follow :class:`~framework.data.datasets.coco.CocoDetection`'s contract: a uint8 CHW
    ``tv_tensors.Image`` and ``{"boxes": BoundingBoxes XYXY, "labels": int64 0..7, "image_id": int,
    "orig_size": (H, W)}``. Images are ordered by their path (``<city>/<name>``); ``image_id`` is the 1-based
    position in that order over the whole split (stable under ``filter_empty``), ``ids[index]`` is it.

    The arrays keep every image of the split, since :attr:`coco` holds the whole split's ground truth;
    ``filter_empty`` only narrows the samples (``_kept``).
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        transforms: Callable | None = None,
        filter_empty: bool = False,
        with_masks: bool = False,
        on_bad_image: str = "error",
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        self.root = Path(root).expanduser()
        self.split = split
        self.transforms = transforms
        self.with_masks = with_masks
        self.img_dir: Path = self.root / "leftImg8bit" / split
        self.ann_dir: Path = self.root / "gtFine" / split
        self._image_root = self.img_dir
        hint = _layout_hint(self.root, split)
        if not self.root.is_dir():
            raise missing_path_error(self.root, "Cityscapes root", hint)
        for folder in (self.img_dir, self.ann_dir):
            if not folder.is_dir():
                raise DatasetNotFoundError(
                    f"Folder {folder} does not exist.{_misplaced_root_hint(self.root)}\n{hint}"
                )
        files = sorted(p.relative_to(self.img_dir).as_posix() for p in self.img_dir.glob(f"*/*{LEFT_SUFFIX}"))
        if not files:
            raise DatasetNotFoundError(f"No <city>/*{LEFT_SUFFIX} images under {self.img_dir}.\n{hint}")
        self._set_classes(CITYSCAPES_CLASSES)

        pairs = [(self.img_dir / f, self._instance_png(f), i) for i, f in enumerate(files, start=1)]
        # PNG decoding and numpy release the GIL: threads make the one-off scan of ~3000 full-size PNGs a few
        # times faster, and map() keeps the order (so the first failing file, in order, is the one reported).
        workers = max(1, min(8, os.cpu_count() or 1, len(pairs)))
        if workers == 1:
            scanned = [_scan(*p) for p in pairs]
        else:
            with ThreadPoolExecutor(workers) as pool:
                scanned = list(pool.map(lambda p: _scan(*p), pairs))

        self._files: list[str] = files  # relative to img_dir, e.g. "aachen/aachen_000000_000019_leftImg8bit.png"
        self._image_ids = np.arange(1, len(files) + 1, dtype=np.int64)
        self._sizes = np.asarray([(s.height, s.width) for s in scanned], dtype=np.int64).reshape(-1, 2)
        self._offsets = offsets_of([len(s.labels) for s in scanned])
        self._boxes = concat([s.boxes for s in scanned], (0, 4), np.float32)
        self._labels = concat([s.labels for s in scanned], (0,), np.int64)
        self._areas = concat([s.areas for s in scanned], (0,), np.int64)
        self._crowd_offsets = offsets_of([len(s.crowd_labels) for s in scanned])
        self._crowd_boxes = concat([s.crowd_boxes for s in scanned], (0, 4), np.float32)
        self._crowd_labels = concat([s.crowd_labels for s in scanned], (0,), np.int64)
        self._crowd_areas = concat([s.crowd_areas for s in scanned], (0,), np.int64)
        self._values = concat([s.values for s in scanned], (0,), np.int32)
        self._crowd_values = concat([s.crowd_values for s in scanned], (0,), np.int32)

        # Boxes are the extents of mask pixels: never empty, NaN or outside the image. The report is here so that
        # every dataset has one (all zeros).
        self.box_report: dict[str, int] = count_boxes(np.zeros(0, dtype=np.int8))
        bad = np.asarray([s.problem is not None for s in scanned], dtype=bool)
        if bad.any() and not with_masks:  # a box model's data: the first bad file, in order, stops the build
            raise DatasetError(next(s.problem for s in scanned if s.problem is not None))
        if with_masks:
            problems = MaskProblems(f"{self.ann_dir} (Cityscapes {split})", on_bad_image)
            for s in scanned:
                if s.problem is not None:
                    problems.add(s.problem, dropped=s.unused)
            self.box_report = problems.finish(self.box_report)
        self._bad = bad  # images left out (on_bad_image=skip): neither samples nor in `coco`
        kept = np.flatnonzero(~bad)
        self._kept = kept[np.diff(self._offsets)[kept] > 0] if filter_empty else kept

    # ------------------------------------------------------------------ metadata

    def __len__(self) -> int:
        return len(self._kept)

    def _row(self, index: int) -> int:
        return int(self._kept[range(len(self._kept))[index]])

    @property
    def ids(self) -> list[int]:
        """Image ids of the samples, in order. A new list on each access: index it once."""
        return (self._kept + 1).tolist()

    def _file_name(self, row: int) -> str:
        return self._files[row]

    def _instance_png(self, file_name: str) -> Path:
        """The instance-id PNG of an image (``file_name`` relative to ``img_dir``)."""
        return self.ann_dir / (file_name[: -len(LEFT_SUFFIX)] + INSTANCE_IDS_SUFFIX)

    def _instance_ids(self, row: int) -> np.ndarray:
        """The instance-id PNG of `row`, decoded again (a file changed since the build is reported as a bad file,
        naming the image id)."""
        path = self._instance_png(self._files[row])
        try:
            ids = _read_instance_ids(path)
        except DatasetError as e:
            raise BadImageError(path, f"{e} (image_id {row + 1})") from None
        if ids.shape != tuple(self._sizes[row]):
            raise BadImageError(path, f"it is {ids.shape[1]}x{ids.shape[0]}, not the {self._sizes[row][1]}x"
                                      f"{self._sizes[row][0]} it was when the dataset was built (image_id {row + 1})")
        return ids

    def get_annotation(self, index: int) -> dict[str, Any]:
        """Ground truth of one image: instances and group regions (``crowd``) as arrays, boxes XYXY.

        ``{"image_id", "boxes" (N, 4) float32, "labels" (N,) int64, "areas" (N,) int64,
        "crowd_boxes" (M, 4) float32, "crowd_labels" (M,) int64, "crowd_areas" (M,) int64}``.
        """
        row = self._row(index)
        s = self._objects(row)
        c = slice(self._crowd_offsets[row], self._crowd_offsets[row + 1])
        return {
            **self._ground_truth(row),
            "areas": self._areas[s].copy(),
            "crowd_boxes": self._crowd_boxes[c].copy(),
            "crowd_labels": self._crowd_labels[c].copy(),
            "crowd_areas": self._crowd_areas[c].copy(),
        }

    def _build_coco(self) -> COCO:
        """The whole split's ground truth (filtered-out images included).

        Category ids ``1..8`` (``label_to_cat_id``), image ids = ``image_id``; every instance with its mask's box and
        pixel count as ``area`` (what COCO's small/medium/large split uses), every group region with
        ``iscrowd=1``. Box AP over the 8 classes on it is what mmdetection reports for Cityscapes.
        """
        images: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        rows = np.flatnonzero(~self._bad).tolist()  # images left out for a bad instance PNG are not graded
        segms = self._coco_segmentations(rows) if self.with_masks else None
        for k, row in enumerate(rows):
            images.append(self._info(row))
            s = self._objects(row)
            c = slice(self._crowd_offsets[row], self._crowd_offsets[row + 1])
            new = box_annotations(row + 1, self._boxes[s].tolist(), self._labels[s].tolist(), len(anns) + 1,
                                  areas=self._areas[s].tolist())
            new += box_annotations(row + 1, self._crowd_boxes[c].tolist(), self._crowd_labels[c].tolist(),
                                   len(anns) + len(new) + 1, areas=self._crowd_areas[c].tolist(), iscrowd=1)
            if segms is not None:
                for ann, rle in zip(new, segms[k]):
                    ann["segmentation"] = rle
            anns += new
        return coco_index({
            "info": {"description": f"Cityscapes {self.split} (gtFine instances, {self.root})"},
            "images": images,
            "annotations": anns,
            "categories": self._categories(lambda name: _SUPERCATEGORY.get(name, "vehicle")),
        })

    def _coco_segmentations(self, rows: list[int]) -> list[list[dict[str, Any]]]:
        """Per row of `rows`, the compressed RLE of each instance, then of each group region (the order of
        `_build_coco`), read from the instance PNGs now, in a thread pool (the first use of `coco`)."""
        def one(row: int) -> list[dict[str, Any]]:
            ids = self._instance_ids(row)
            s = self._objects(row)
            c = slice(self._crowd_offsets[row], self._crowd_offsets[row + 1])
            boxes = np.concatenate([self._boxes[s], self._crowd_boxes[c]])
            values = np.concatenate([self._values[s], self._crowd_values[c]])
            return [encode_mask(m) for m in _masks_of(ids, values, boxes)]

        workers = max(1, min(8, os.cpu_count() or 1, len(rows)))
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, rows))

    def _training_instances(self, row: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = self._instance_ids(row)
        if ids.shape != (h, w):
            raise BadImageError(self._image_root / self._files[row],
                                f"it decodes to {w}x{h}, but its instance PNG is {ids.shape[1]}x{ids.shape[0]} "
                                f"(image_id {row + 1})")
        s = self._objects(row)  # boxes are the masks' extents: inside the image, nothing to clip or drop
        masks = _masks_of(ids, self._values[s], self._boxes[s])
        return self._boxes[s], self._labels[s], masks

    def _repr_fields(self) -> dict[str, Any]:
        return {"root": str(self.root), "split": self.split, "images": len(self), "instances": len(self._labels),
                "crowd_regions": len(self._crowd_labels), "classes": self.num_classes}
