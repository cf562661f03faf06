"""Detection dataset in the ultralytics YOLO format: a ``data.yaml`` plus one ``.txt`` label file per image.

The format most users already hold (ultralytics, Roboflow and CVAT exports)::

    data.yaml          path: .            # dataset root; relative to this file's folder; absent: this folder
                       train: images/train   # a folder, a .txt list of image paths, or a list of these
                       val: images/val
                       names: [person, car]  # or {0: person, 1: car}; `nc`, if given, must agree
    images/train/x.jpg   →   labels/train/x.txt   (the LAST `/images/` of the path becomes `/labels/`, as ultralytics
                                                    pairs them; an image path without `/images/` has its label beside it)

A label row is ``class cx cy w h`` normalized to [0, 1] by the image's width and height, or a polygon
``class x1 y1 x2 y2 x3 y3 …`` (instance segmentation exports), whose box is the polygon's extents. Polygons are kept,
as one flat float32 array of points with offsets (:meth:`YOLODataset.polygons`), for masks. An empty or missing label
file is a background image; missing ones are counted and reported once.

Masks (ultralytics' ``-seg`` datasets). ``with_masks=True`` adds ``masks`` to each target, each object's polygon
drawn per sample through ``pycocotools.mask`` at the decoded image's size. A mask model needs a polygon for every
object: a box row then stops the build naming the file and line, or, under ``on_bad_image="skip"``, is left out
(counted in ``box_report["dropped_bad_mask"]``).

Why the image headers are read when the dataset is built: boxes are normalized, and the framework's are absolute
pixels (as are the evaluator's ground truth and the aspect-ratio grouping). PIL reads only the header (no decoding),
in a thread pool, so a large set costs seconds. An image whose header cannot be read is kept, without boxes, so that
the image check before training names it and ``dataset.on_bad_image`` decides (stop, or train without it).

A malformed row (a wrong number of values, a non-number, a class id not in ``names``, a negative size, NaN or inf)
raises a ``DatasetError`` naming the file and the 1-based line. A box reaching out of the image is cut to it, one
with no area (or none left inside the image) is dropped; both are counted in ``box_report`` and reported in one
warning. As in :mod:`~framework.data.datasets.voc`, everything is held in flat numpy arrays: the dataset is copied
into every loader worker.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml
from pycocotools.coco import COCO

from pycocotools import mask as mask_utils

from framework.data.datasets.bad_masks import MaskProblems
from framework.data.datasets.base import (DetectionDatasetBase, box_annotations, check_class_names, coco_index,
                                          images_with_boxes, offsets_of, usable_boxes)
from framework.data.datasets.box_report import CLIPPED, OK, check_boxes, report_boxes
from framework.data.datasets.coco_tables import pack_strings, unpack_string
from framework.data.datasets.roots import check_exists, missing_path_error
from framework.data.datasets.voc import _header_size, _read_text
from framework.data.errors import DatasetError, DatasetNotFoundError
from framework.data.scan import default_workers

__all__ = ["IMAGE_SUFFIXES", "DataYaml", "YOLODataset", "label_path", "read_data_yaml"]

logger = logging.getLogger("framework")

#: Image files a split folder is searched for (ultralytics' list, less the formats nothing here reads); those the
#: loader cannot decode (BMP, TIFF) are named by the image check before training, not silently skipped.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"})
_SPLIT_KEYS = ("train", "val", "test", "minival")  # the split keys ultralytics knows: their values must be paths
# Keys of ultralytics' own data.yaml files that are not splits (any other key whose value is paths is one, so that a
# converted VOC `trainval` split reads back as `split=trainval`).
_NOT_SPLITS = frozenset({"path", "names", "nc", "download", "yaml_file", "kpt_shape", "flip_idx", "channels"})
_CHUNK = 256  # images per thread-pool task
_ROUNDING = 1e-4  # normalized coordinates this close to 0 or 1 are taken as the border (writers round to 6 digits)


def label_path(image: str | Path) -> Path:
    """The label file of an image, as ultralytics pairs them: the last ``/images/`` component becomes ``/labels/``
    and the suffix ``.txt`` (beside the image when its path has no ``images`` folder)."""
    return Path(_label_file(str(image)))


def _label_file(image: str) -> str:
    """`label_path` on strings (pathlib costs more than the rest of reading a label file)."""
    head, sep, tail = (os.sep + image).rpartition(f"{os.sep}images{os.sep}")
    path = f"{head}{os.sep}labels{os.sep}{tail}"[1:] if sep else image
    return os.path.splitext(path)[0] + ".txt"


@dataclass(frozen=True)
class DataYaml:
    """A checked ``data.yaml``: the resolved dataset root, the class names, and each split's entries as written."""

    file: Path
    root: Path
    names: list[str]
    splits: dict[str, list[str]]

    def images(self, split: str) -> list[str]:
        """The image files of `split` (absolute paths), sorted as ultralytics orders them."""
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DatasetError(f"{self.file} has no '{split}' split (its splits: {have}). Add `{split}: images/{split}` "
                               "(a folder, a .txt list of images, or a list of these) or choose one of those.")
        files: list[str] = []
        for entry in self.splits[split]:
            files += _entry_images(self, split, entry)
        if not files:
            raise DatasetError(f"The '{split}' split of {self.file} ({', '.join(self.splits[split])}) holds no images "
                               f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))} files).")
        return sorted(files)


def _entry_path(data: DataYaml, entry: str) -> Path:
    """A split entry relative to the root; like ultralytics, `../x` that does not exist is retried as `x` (Roboflow
    exports write `../train/images` in a data.yaml that sits beside `train/`)."""
    p = data.root / Path(entry).expanduser()
    if not p.exists() and entry.startswith("../") and (data.root / entry[3:]).exists():
        return data.root / entry[3:]
    return p


def _entry_images(data: DataYaml, split: str, entry: str) -> list[str]:
    p = _entry_path(data, entry).absolute()
    if p.is_dir():
        found = []
        for folder, _, names in os.walk(p, followlinks=True):
            found += [os.path.join(folder, n) for n in names if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES]
        return found
    if p.is_file():  # a list of image paths: relative to the root, `./x` relative to the list's own folder
        images = []
        for line in _read_text(p).splitlines():
            line = line.strip()
            if line:
                images.append(str(p.parent / line[2:] if line.startswith("./") else data.root / line))
        return images
    raise missing_path_error(p, "Image folder or list",
                             f"It is the '{split}' entry {entry!r} of {data.file}: an image folder or a .txt list of "
                             f"images, relative to the dataset root {data.root} (`path` in the data.yaml; absent: the "
                             "data.yaml's folder).")


def _names(raw: Any, file: Path) -> list[str]:
    if isinstance(raw, dict):
        try:
            keyed = {int(k): v for k, v in raw.items()}
        except (TypeError, ValueError):
            keyed = {}
        if len(keyed) != len(raw) or sorted(keyed) != list(range(len(raw))):
            raise DatasetError(f"{file}: the keys of `names` must be the class ids 0..{len(raw) - 1}, got "
                               f"{', '.join(map(str, raw))}")
        raw = [keyed[i] for i in range(len(raw))]
    if not isinstance(raw, list) or not raw:
        raise DatasetError(f"{file}: `names` must be a non-empty list of class names or a dict {{0: name, …}}")
    if any(n is None or isinstance(n, (dict, list)) for n in raw):
        raise DatasetError(f"{file}: `names` holds an entry that is not a name: {raw}")
    names = [str(n) for n in raw]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"{file}: `names` lists {dup} more than once")
    return names


def read_data_yaml(path: str | Path) -> DataYaml:
    """Parse and check an ultralytics ``data.yaml`` (see the module docstring); errors name the file."""
    file = check_exists(Path(path).expanduser(), "The data.yaml",
                        "Point the config at yours with `dataset.data=/path/to/data.yaml`.").absolute()
    if file.is_dir():
        raise DatasetError(f"{file} is a folder; `dataset.data` names the data.yaml file itself "
                           f"(e.g. {file / 'data.yaml'})")
    try:
        raw = yaml.safe_load(_read_text(file))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise DatasetError(f"Could not parse {file}: {getattr(e, 'problem', None) or e}{where}") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{file} is not a data.yaml: expected a mapping with `names` and `train`/`val` entries")
    root = Path(str(raw["path"])).expanduser() if raw.get("path") else Path(".")
    root = check_exists(file.parent / root, "The dataset root",
                        f"It is `path` in {file} (relative paths start at the data.yaml's folder).")
    nc = raw.get("nc")
    if "names" in raw:
        names = _names(raw["names"], file)
    elif isinstance(nc, int) and nc > 0:
        names = [f"class{i}" for i in range(nc)]  # as ultralytics names them
    else:
        raise DatasetError(f"{file} has no `names` (the class names, index = class id in the label files)")
    if nc is not None and nc != len(names):
        raise DatasetError(f"{file}: `nc: {nc}` but `names` lists {len(names)} classes; drop `nc` or make them agree")
    splits: dict[str, list[str]] = {}
    for key, value in raw.items():
        if key in _NOT_SPLITS or value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        if entries and all(isinstance(e, str) and "\n" not in e and "://" not in e for e in entries):
            splits[str(key)] = entries
        elif key in _SPLIT_KEYS:
            raise DatasetError(f"{file}: `{key}` must be a path or a list of paths, got {value!r}")
    return DataYaml(file=file, root=root.absolute(), names=names, splits=splits)


class _Labels:
    """One label file, parsed: per object its class, normalized XYXY box, source line and polygon (flat points)."""

    __slots__ = ("labels", "boxes", "lines", "points", "counts")

    def __init__(self, labels: list[int], boxes: list[tuple[float, ...]], lines: list[int], points: list[float],
                 counts: list[int]) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.lines = np.asarray(lines, dtype=np.int32)
        self.points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        self.counts = np.asarray(counts, dtype=np.int64)  # polygon points per object (0: a box row)


_NO_LABELS = _Labels([], [], [], [], [])


def _parse_labels(path: Path, num_classes: int) -> _Labels:
    """Parse one label file; every malformed row raises a DatasetError naming the file and 1-based line."""
    labels, boxes, lines, points, counts = [], [], [], [], []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}, line {n}"
        k = len(parts)
        if k != 5 and (k < 7 or k % 2 == 0):
            raise DatasetError(f"{where}: {k} values; expected 5 (class cx cy w h) or a polygon (class x1 y1 x2 y2 "
                               "x3 y3 …: an even number of coordinates, at least 3 points)")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            bad = next(v for v in parts if not _is_number(v))
            raise DatasetError(f"{where}: {bad!r} is not a number") from None
        cls = values[0]
        if not (cls.is_integer() and 0 <= cls < num_classes):
            raise DatasetError(f"{where}: class id {parts[0]} is not one of the {num_classes} classes of `names` "
                               f"(0..{num_classes - 1})")
        coords = values[1:]
        if not all(math.isfinite(v) for v in coords):
            raise DatasetError(f"{where}: a coordinate is NaN or infinite ({' '.join(parts[1:])})")
        if k == 5:
            cx, cy, w, h = coords
            if w < 0 or h < 0:
                raise DatasetError(f"{where}: negative width or height (w={parts[3]}, h={parts[4]})")
            boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            counts.append(0)
        else:
            xs, ys = coords[0::2], coords[1::2]
            boxes.append((min(xs), min(ys), max(xs), max(ys)))
            points += coords
            counts.append(len(xs))
        labels.append(int(cls))
        lines.append(n)
    return _Labels(labels, boxes, lines, points, counts) if labels else _NO_LABELS


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_image(image: str, num_classes: int) -> tuple[tuple[int, int], str | None, _Labels | None]:
    """(height, width) from the header ((0, 0) and the reason when unreadable) and the parsed labels (None: no file)."""
    labels_file = _label_file(image)
    labels = _parse_labels(Path(labels_file), num_classes) if os.path.isfile(labels_file) else None
    try:
        why = f"its size is needed to read {os.path.basename(labels_file)}"
        return _header_size(Path(image), why), None, labels
    except (DatasetError, DatasetNotFoundError) as e:
        return (0, 0), str(e), labels


def _read_images(images: list[str], num_classes: int) -> list[tuple[tuple[int, int], str | None, _Labels | None]]:
    """`_read_image` of every image, in a thread pool (file system latency overlaps) over chunks of images (a task
    per image would cost more than the work)."""
    chunks = [images[i:i + _CHUNK] for i in range(0, len(images), _CHUNK)]
    with ThreadPoolExecutor(max_workers=min(default_workers(), len(chunks))) as pool:
        done = pool.map(lambda chunk: [_read_image(p, num_classes) for p in chunk], chunks)
        return [r for chunk in done for r in chunk]


class YOLODataset(DetectionDatasetBase):
    """Detection samples of one split of an ultralytics ``data.yaml`` (see the module docstring).

    Args:
        data: the ``data.yaml`` file.
        split: a split key of it (``train``, ``val``, ``test``, …).
        transforms: applied to ``(image, target)``.
        filter_empty: leave out images without any usable box (background images stay by default, as in
            ultralytics: they teach the detector what is not an object).
        classes: class names to use instead of the data.yaml's ``names`` (index = class id in the label files).
        with_masks: add each object's polygon as ``masks`` (see the module docstring).
        on_bad_image: ``dataset.on_bad_image``; with masks, ``"skip"`` leaves box rows out instead of stopping.

    ``image_id`` is the image's 1-based position in the split's sorted image list, stable under ``filter_empty``.
    Class ids are the labels (``0..K-1``); the COCO view (:attr:`coco`) numbers categories ``1..K``.
    """

    def __init__(
        self,
        data: str,
        split: str = "train",
        transforms: Callable | None = None,
        filter_empty: bool = False,
        classes: Sequence[str] | None = None,
        with_masks: bool = False,
        on_bad_image: str = "error",
    ) -> None:
        spec = read_data_yaml(data)
        self.with_masks = with_masks
        self.data: Path = spec.file
        self.root: Path = spec.root
        self._image_root = spec.root
        self.split = split
        self.transforms = transforms
        if classes is not None:
            self._set_classes(check_class_names(classes))
            self.classes_source = "the dataset's classes argument"
        else:
            self._set_classes(spec.names)
            self.classes_source = f"the names of {spec.file}"

        images = spec.images(split)
        n = len(images)
        read = _read_images(images, self.num_classes)
        sizes = np.asarray([r[0] for r in read], dtype=np.int64).reshape(-1, 2)  # (H, W)
        parsed = [r[2] or _NO_LABELS for r in read]
        self._report_missing(images, [r[2] is None for r in read], [r[1] for r in read])

        counts = np.asarray([len(p.labels) for p in parsed], dtype=np.int64)
        img_of = np.repeat(np.arange(n), counts)
        labels = np.concatenate([p.labels for p in parsed])  # a split has at least one image (images() says)
        lines = np.concatenate([p.lines for p in parsed])
        npts = np.concatenate([p.counts for p in parsed])
        points = np.concatenate([p.points for p in parsed])
        h, w = sizes[img_of, 0].astype(np.float64), sizes[img_of, 1].astype(np.float64)
        boxes = np.concatenate([p.boxes for p in parsed])
        # A box written up to the border overshoots it by the rounding of its normalized values (cx + w/2 = 1.000001):
        # snapped silently, so that the warning counts only boxes that really reach out of the image.
        near = (np.abs(boxes) < _ROUNDING) | (np.abs(boxes - 1) < _ROUNDING)
        boxes = np.where(near, boxes.round(), boxes) * np.stack([w, h, w, h], axis=1)
        points = points * np.stack([np.repeat(w, npts), np.repeat(h, npts)], axis=1)

        readable = (sizes[img_of] > 0).all(axis=1)  # unreadable images keep no boxes (their scan names them)
        codes, clipped = check_boxes(boxes[readable], h[readable], w[readable])
        ok_img, ok_line = img_of[readable], lines[readable]
        self.box_report: dict[str, int] = report_boxes(
            f"{spec.file} ({split})", codes, lambda i: f"{_label_file(images[ok_img[i]])}, line {ok_line[i]}")
        good = np.zeros(len(labels), dtype=bool)
        good[np.flatnonzero(readable)[(codes == OK) | (codes == CLIPPED)]] = True
        boxes[readable] = clipped
        if with_masks:  # every object needs a polygon
            problems = MaskProblems(f"{spec.file} ({split})", on_bad_image)
            for i in np.flatnonzero(good & (npts == 0)):
                problems.add(f"{_label_file(images[img_of[i]])}, line {lines[i]}: a box row (class cx cy w h) has no "
                             "polygon, which a mask model needs (class x1 y1 x2 y2 x3 y3 …)")
                good[i] = False
            self.box_report = problems.finish(self.box_report)

        keep = images_with_boxes(img_of[good], n) if filter_empty else np.ones(n, dtype=bool)
        idx = np.flatnonzero(keep)
        rows = good & keep[img_of]
        self._image_ids = np.arange(1, n + 1, dtype=np.int64)[idx]
        self._sizes = sizes[idx]
        self._files, self._file_offsets = pack_strings([self._relative(images[i]) for i in idx])
        self._offsets = offsets_of(np.bincount(img_of[rows], minlength=n)[idx])
        self._boxes = boxes[rows].astype(np.float32)
        self._labels = labels[rows]
        self._poly_offsets = offsets_of(npts[rows])
        self._points = points[np.repeat(rows, npts)].astype(np.float32)

    def _relative(self, image: str) -> str:
        """The image's path relative to the root where it lies inside it (the file_name of the COCO view)."""
        root = f"{self.root}{os.sep}"
        return image[len(root):].replace(os.sep, "/") if image.startswith(root) else image

    def _report_missing(self, images: list[str], missing: list[bool], unreadable: list[str | None]) -> None:
        """One warning for the images without a label file (backgrounds), one for those whose size is unknown."""
        n_missing, total = sum(missing), len(images)
        if n_missing:
            example = _label_file(images[missing.index(True)])
            what = (f"none of the {total} images has a label file (e.g. {example}): are the labels in a `labels/` "
                    "folder beside `images/`?" if n_missing == total else
                    f"{n_missing} of {total} images have no label file (e.g. {example}); they are used as background "
                    "images (an empty label file says so without this warning)")
            logger.warning(f"{self.data} ({self.split}): {what}")
        bad = [u for u in unreadable if u is not None]
        if bad:
            logger.warning(f"{self.data} ({self.split}): {len(bad)} image{'s' if len(bad) > 1 else ''} whose size "
                           f"cannot be read, so their labels are left out, e.g. {bad[0]}. The image check before "
                           "training lists them (dataset.on_bad_image decides).")

    # ------------------------------------------------------------------ metadata

    def _file_name(self, row: int) -> str:
        return unpack_string(self._files, self._file_offsets, row)

    def label_path(self, index: int) -> Path:
        """The label file of sample `index` (it may not exist: a background image)."""
        return label_path(self.image_path(index))

    def get_annotation(self, index: int) -> dict[str, Any]:
        """Ground truth of one image: ``{"image_id", "boxes": float32 (N, 4) XYXY pixels, "labels": int64 (N,)}``,
        boxes clipped to the image; row ``j`` is polygon ``j`` of :meth:`polygons`."""
        return self._ground_truth(self._row(index))

    def polygons(self, index: int) -> list[np.ndarray]:
        """The polygon of each object of image `index` as float32 (P, 2) points in pixels (x, y), in the order of
        :meth:`get_annotation`; an object written as a box row has an empty (0, 2) array."""
        return self._polygons(self._row(index))

    def _polygons(self, i: int) -> list[np.ndarray]:
        o = self._poly_offsets[self._offsets[i]:self._offsets[i + 1] + 1]
        return [self._points[a:b].copy() for a, b in zip(o[:-1], o[1:])]

    def _training_instances(self, row: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self._objects(row)
        boxes, keep = usable_boxes(self._boxes[s], h, w)
        polygons = [p for p, k in zip(self._polygons(row), keep) if k]
        # polygons are in the pixels of the header's size; the decoded image has that size (the scan checks it)
        masks = np.zeros((len(polygons), h, w), dtype=np.uint8)
        for m, poly in zip(masks, polygons):
            m[:] = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly.reshape(-1).tolist()], h, w)))
        return boxes[keep], self._labels[s][keep], masks

    def _build_coco(self) -> COCO:
        """The labels as the COCO evaluator's ground truth: category ids ``1..K`` (``label_to_cat_id``), image ids
        ``image_id``; objects written as polygons carry them as ``segmentation``."""
        images, anns = [], []
        for row in range(len(self)):
            images.append(self._info(row))
            s = self._objects(row)
            new = box_annotations(images[-1]["id"], self._boxes[s].tolist(), self._labels[s].tolist(), len(anns) + 1)
            for ann, poly in zip(new, self.polygons(row)):
                if len(poly):
                    ann["segmentation"] = [poly.reshape(-1).tolist()]
            anns += new
        return coco_index({"images": images, "annotations": anns, "categories": self._categories(lambda _: "yolo")})

    def _repr_fields(self) -> dict[str, Any]:
        return {"data": str(self.data), "split": self.split, **super()._repr_fields()}
