"""Pascal VOC detection dataset (and any folder in VOC layout).

Reads ``<root>/VOC<year>/ImageSets/Main/<image_set>.txt``, the XML files in ``Annotations/`` and the JPEGs in
``JPEGImages/`` of one or more years (``years=["2007", "2012"]`` for the usual "07+12" training set) and yields
samples in the framework's contract, the same as :class:`~framework.data.datasets.coco.CocoDetection`: a uint8 CHW
``tv_tensors.Image`` and a target dict with XYXY ``boxes``, contiguous ``labels`` ``0..K-1``, an int ``image_id``
and ``orig_size``, plus per-box ``difficult`` and ``truncated`` flags.

Pixel convention. VOC boxes are 1-based, inclusive pixel indices: ``xmin=1, xmax=10`` is the first ten pixel
columns. The framework's boxes are continuous coordinates in which pixel ``i`` (0-based) covers ``[i, i+1)``, so
the same ten columns are ``x0=0, x1=10``::

    x0 = xmin - 1,  y0 = ymin - 1,  x1 = xmax,  y1 = ymax

With this conversion ``(x1 - x0) * (y1 - y0)`` equals the legacy devkit's ``(xmax - xmin + 1) * (ymax - ymin + 1)``
and the intersection ``min(x1) - max(x0)`` equals its ``min(xmax) - max(xmin) + 1``, so areas and IoUs computed
on our boxes without any "+1" are exactly the official VOC ones (mmdetection gets the same numbers by subtracting
1 from all four coordinates and adding the 1 back in its "legacy" IoU). Detections therefore need no conversion
before VOC evaluation, and a box covering the whole image is ``[0, 0, W, H]`` as everywhere else.

Difficult objects. The devkit neither rewards nor penalises detections of objects marked ``<difficult>1``; they
are left out of the training targets unless ``keep_difficult=True``. :meth:`VOCDetection.get_annotation`, the
ground truth of the VOC evaluator, always includes them with their flag.

Annotations are parsed once, at construction, into a few flat numpy arrays (not a dict per object): the dataset
is copied into every loader worker, and flat arrays stay small and are not touched by reference counting.

Masks. ``with_masks=True`` (a mask model's data) keeps only the images that have a ``SegmentationObject/<id>.png``
(VOC2012's segmentation images: 1464 of train's 5717, 1449 of val's 5823; the count is logged) and adds ``masks``
to each target: pixel value ``i`` of that PNG is the ``i``-th ``<object>`` of the XML file (0 background, 255 void:
borders, part of no mask), decoded per sample, never held. Both segmentation PNGs of every kept image are checked
when the dataset is built (size, indices, and each object's class in ``SegmentationClass/<id>.png`` against its XML
class, see :mod:`~framework.data.datasets.voc_masks`); a bad one stops the build naming the file and the image id,
or, under ``on_bad_image="skip"``, leaves the image out (its objects counted in ``box_report["dropped_bad_mask"]``).

Degenerate boxes. An inverted box (``xmax < xmin``) or one with NaN/inf coordinates is dropped, from training and
evaluation; a box reaching out of the image is cut to it for training (and left out if nothing is left). They are
counted in ``box_report`` and reported in one warning when the dataset is built; malformed XML (a file cut short,
a non-numeric coordinate, a missing ``<bndbox>``) raises a ``DatasetError`` naming the file and the position.
"""

from __future__ import annotations

import difflib
import logging
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pycocotools.coco import COCO

from framework.data.datasets.bad_masks import MaskProblems
from framework.data.datasets.base import (DetectionDatasetBase, box_annotations, check_class_names, clip_boxes,
                                          coco_index, concat, images_with_boxes, offsets_of, usable_boxes)
from framework.data.datasets.box_report import CLIPPED, EMPTY, NONFINITE, OK, check_boxes, report_boxes
from framework.data.datasets.roots import missing_path_error
from framework.data.datasets.segmentation import encode_mask
from framework.data.datasets.voc_masks import (CLASS_DIR, OBJECT_DIR, check_segmentation_pngs, object_masks,
                                               read_index_png)
from framework.data.errors import BadImageError, DatasetError, DatasetNotFoundError
from framework.data.scan import default_workers

__all__ = ["VOC_CLASSES", "VOCDetection", "read_classes_file"]

logger = logging.getLogger("framework")

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

CLASSES_FILE = "classes.txt"  # optional, in a year folder: one class name per line (custom VOC-format datasets)


def _layout_hint(root: Path, years: Sequence[str], image_set: str) -> str:
    """The expected folder tree and the override that points the config at it."""
    lines = ["Expected layout:", f"  {root}/"]
    for i, year in enumerate(years):
        last = i == len(years) - 1
        lines.append("  " + ("└── " if last else "├── ") + f"VOC{year}/")
        ind = "  " + ("    " if last else "│   ")
        lines += [
            ind + "├── Annotations/",
            ind + "│   └── <id>.xml …",
            ind + "├── ImageSets/",
            ind + "│   └── Main/",
            ind + f"│       └── {image_set}.txt   (one image id per line)",
            ind + "└── JPEGImages/",
            ind + "    └── <id>.jpg …",
        ]
    lines.append(
        "Point the config at your copy with `dataset.root=/path/to/VOCdevkit` "
        "(the folder that holds the VOC<year>/ folders)."
    )
    return "\n".join(lines)


def _misplaced_root_hint(root: Path, year: str) -> str:
    """Catch the two usual mistakes: root one level too high (the tarball's parent) or too low (VOC2007 itself)."""
    if (root / "VOCdevkit" / f"VOC{year}").is_dir():
        return f" It contains VOCdevkit/VOC{year}: did you mean `dataset.root={root / 'VOCdevkit'}`?"
    if (root / "Annotations").is_dir() or (root.name.startswith("VOC") and root.name != "VOCdevkit"):
        return f" {root} looks like a year folder itself: did you mean `dataset.root={root.parent}`?"
    return ""


def _read_text(path: Path) -> str:
    """A UTF-8 text file; bytes that are not UTF-8 are reported with the file and line (a DatasetError)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DatasetError(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at line {line})") from None


def read_classes_file(path: str | Path) -> list[str]:
    """Class names from a ``classes.txt``: one per line, blank lines and ``#`` comments skipped."""
    names = []
    for line in _read_text(Path(path)).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    if not names:
        raise DatasetError(f"{path} lists no class names")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"{path} lists class name(s) {dup} more than once")
    return names


def _read_image_set(path: Path) -> list[str]:
    """Image ids of an image-set file; the first token of each line (class-specific files add a ±1 column)."""
    ids: list[str] = []
    for line in _read_text(path).splitlines():
        parts = line.split()
        if parts:
            ids.append(parts[0])
    return ids


class _Parsed:
    """One annotation file, as arrays (boxes already in the framework's continuous XYXY)."""

    __slots__ = ("height", "width", "boxes", "labels", "difficult", "truncated")

    def __init__(self, height: int, width: int, boxes: np.ndarray, labels: np.ndarray, difficult: np.ndarray,
                 truncated: np.ndarray) -> None:
        self.height, self.width = height, width
        self.boxes, self.labels, self.difficult, self.truncated = boxes, labels, difficult, truncated


def _text(elem: ET.Element, tag: str) -> str | None:
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        return None
    return child.text.strip()


def _flag(obj: ET.Element, tag: str, where: str) -> bool:
    """An optional 0/1 element (VOC2012 leaves <difficult> out of some objects: absent means 0)."""
    text = _text(obj, tag)
    if text is None:
        return False
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        raise DatasetError(f"{where} has <{tag}>{text}</{tag}>, expected 0 or 1") from None
    if value not in (0, 1):
        raise DatasetError(f"{where} has <{tag}>{text}</{tag}>, expected 0 or 1")
    return bool(value)


def _parse_annotation(path: Path, class_to_label: dict[str, int]) -> _Parsed:
    """Parse one VOC XML file; every error names the file and the element at fault."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        line, col = e.position
        msg = str(e).split(":", 1)[0]  # "mismatched tag: line 3, column 2" → "mismatched tag"
        raise DatasetError(f"Could not parse VOC annotation file {path}: {msg} at line {line}, column {col}") from e
    if root.tag != "annotation":
        raise DatasetError(f"{path}: root element is <{root.tag}>, expected <annotation>")

    height = width = 0
    size = root.find("size")
    if size is not None:
        for tag in ("width", "height"):
            text = _text(size, tag)
            if text is None:
                continue
            try:
                value = int(float(text))
            except (ValueError, OverflowError):
                raise DatasetError(f"{path}: <size>/<{tag}> is {text!r}, expected a number") from None
            if tag == "width":
                width = value
            else:
                height = value

    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    difficult: list[bool] = []
    truncated: list[bool] = []
    for k, obj in enumerate(root.iter("object"), start=1):
        where = f"{path}: object {k}"
        name = _text(obj, "name")
        if name is None:
            raise DatasetError(f"{where} has no <name>")
        if name not in class_to_label:
            close = difflib.get_close_matches(name, list(class_to_label), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known classes: {', '.join(class_to_label)})"
            raise DatasetError(f"{where} has unknown class '{name}'{hint}")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DatasetError(f"{where} has no <bndbox>")
        coords = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = _text(bnd, tag)
            if text is None:
                raise DatasetError(f"{where} has no <bndbox>/<{tag}>")
            try:
                coords.append(float(text))  # "nan" and "inf" parse: such boxes are dropped (and counted) later
            except ValueError:
                raise DatasetError(f"{where} has <bndbox>/<{tag}>{text}</{tag}>, expected a number") from None
        xmin, ymin, xmax, ymax = coords
        # xmax < xmin (an inverted box), NaN and inf are counted and dropped by the dataset, not raised here: one
        # bad box among thousands should not stop a run. xmax == xmin is a one-pixel-wide box (inclusive indices).
        boxes.append((xmin - 1.0, ymin - 1.0, xmax, ymax))
        labels.append(class_to_label[name])
        difficult.append(_flag(obj, "difficult", where))
        truncated.append(_flag(obj, "truncated", where))
    return _Parsed(
        height,
        width,
        np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
        np.asarray(difficult, dtype=bool),
        np.asarray(truncated, dtype=bool),
    )


def _header_size(path: Path, why: str = "its annotation has no usable <size>") -> tuple[int, int]:
    """(height, width) from the image header, for XML files whose <size> is missing or zero (some labelling tools),
    and for YOLO labels (normalized to it); `why` says in errors why the size was needed."""
    from PIL import Image

    if not path.is_file():
        raise DatasetNotFoundError(f"Image file {path} does not exist ({why})")
    try:
        with Image.open(path) as img:
            return int(img.height), int(img.width)
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError… depending on the damage
        raise DatasetError(f"Could not read the size of image {path} ({why}): "
                           f"{str(e).strip() or type(e).__name__}") from e


class VOCDetection(DetectionDatasetBase):
    """Detection samples from a VOCdevkit folder (one or more years concatenated).

    Args:
        root: the ``VOCdevkit`` folder, which holds ``VOC2007/``, ``VOC2012/``, ….
        years: the year folders to read, in order (``["2007", "2012"]`` for 07+12).
        image_set: ``train`` | ``val`` | ``trainval`` | ``test`` (any ``ImageSets/Main/<name>.txt``).
        transforms: applied to ``(image, target)``.
        classes: class names, index = label. ``None``: the ``classes.txt`` of the year folders if they have one
            (custom VOC-format datasets, e.g. the shapes VOC layout), else the 20 VOC classes.
        filter_empty: leave out images with no training box (after ``keep_difficult``).
        keep_difficult: keep objects marked difficult in the training targets (flagged in ``difficult``).
        with_masks: only the images with segmentation PNGs, each target with ``masks`` (see the module docstring).
        on_bad_image: ``dataset.on_bad_image``; with masks, ``"skip"`` leaves out images whose segmentation PNGs
            are bad instead of stopping.

    ``image_id`` is the image's 1-based position in the concatenated image-set lists, stable under
    ``filter_empty``; ``ids[index]`` is the VOC string id (``"000005"``, ``"2008_000002"``).
    """

    def __init__(
        self,
        root: str,
        years: Sequence[str] | str = ("2007",),
        image_set: str = "trainval",
        transforms: Callable | None = None,
        classes: Sequence[str] | None = None,
        filter_empty: bool = False,
        keep_difficult: bool = False,
        with_masks: bool = False,
        on_bad_image: str = "error",
    ) -> None:
        self.root = self._image_root = Path(root).expanduser()
        years = [years] if isinstance(years, (str, int)) else list(years)
        self.years: list[str] = [str(y) for y in years]
        if not self.years:
            raise ValueError("years must name at least one year folder, e.g. ['2007']")
        self.image_set = image_set
        self.transforms = transforms
        self.keep_difficult = keep_difficult
        self.with_masks = with_masks
        set_files = self._set_files()
        self._set_classes(self._resolve_classes(classes))
        class_to_label = {name: i for i, name in enumerate(self.classes)}

        ids: list[str] = []
        year_of: list[int] = []
        sizes: list[tuple[int, int]] = []
        parts: list[_Parsed] = []
        for y, (year, set_file) in enumerate(zip(self.years, set_files)):
            ann_dir = self.root / f"VOC{year}" / "Annotations"
            for img_id in _read_image_set(set_file):
                xml = ann_dir / f"{img_id}.xml"
                if not xml.is_file():
                    raise DatasetNotFoundError(f"Annotation file {xml} (listed in {set_file}) does not exist.")
                p = _parse_annotation(xml, class_to_label)
                h, w = p.height, p.width
                if h <= 0 or w <= 0:
                    h, w = _header_size(self.root / f"VOC{year}" / "JPEGImages" / f"{img_id}.jpg")
                ids.append(img_id)
                year_of.append(y)
                sizes.append((h, w))
                parts.append(p)

        n = len(ids)
        all_sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)  # (H, W)
        counts = [len(p.labels) for p in parts]
        img_of = np.repeat(np.arange(n), np.asarray(counts, dtype=np.int64))  # image of each object, in file order
        obj_of = np.concatenate([np.arange(1, c + 1) for c in counts]) if n else np.zeros(0, np.int64)
        boxes = concat([p.boxes for p in parts], (0, 4), np.float64)
        codes, _ = check_boxes(boxes, all_sizes[img_of, 0], all_sizes[img_of, 1])

        def describe(i: int) -> str:
            return f"VOC{self.years[year_of[img_of[i]]]}/Annotations/{ids[img_of[i]]}.xml object {obj_of[i]}"

        self.box_report: dict[str, int] = report_boxes(
            f"{self.root} ({image_set} of VOC{'+'.join(self.years)})", codes, describe)
        # NaN/inf and inverted boxes are dropped here, for training and evaluation alike. Boxes reaching out of the
        # image (counted as clipped or outside) stay as written for the evaluation and are cut for training.
        good = (codes != NONFINITE) & (codes != EMPTY)
        difficult = concat([p.difficult for p in parts], (0,), bool)
        keep = np.ones(n, dtype=bool)
        if with_masks:
            keep = self._segmented(ids, year_of, all_sizes, parts, on_bad_image)
        if filter_empty:
            usable = ((codes == OK) | (codes == CLIPPED)) & (keep_difficult | ~difficult)
            keep &= images_with_boxes(img_of[usable], n)
        idx = np.flatnonzero(keep)
        rows = good & keep[img_of]

        self._voc_ids: list[str] = [ids[i] for i in idx]
        self._image_ids = np.arange(1, n + 1, dtype=np.int64)[idx]
        self._year_of = np.asarray(year_of, dtype=np.int16)[idx]
        self._sizes = all_sizes[idx]
        self._offsets = offsets_of(np.bincount(img_of[rows], minlength=n)[idx])
        self._boxes = boxes[rows].astype(np.float32)
        self._labels = concat([p.labels for p in parts], (0,), np.int64)[rows]
        self._difficult = difficult[rows]
        self._truncated = concat([p.truncated for p in parts], (0,), bool)[rows]
        self._xml_index = obj_of[rows].astype(np.int32)  # 1-based position in the XML file: the PNG's index

    # ------------------------------------------------------------------ construction helpers

    def _set_files(self) -> list[Path]:
        """The image-set file of each year, after checking the folders a VOC year must have."""
        hint = _layout_hint(self.root, self.years, self.image_set)
        if not self.root.is_dir():
            raise missing_path_error(self.root, "Dataset root", hint)
        set_files: list[Path] = []
        for year in self.years:
            year_dir = self.root / f"VOC{year}"
            if not year_dir.is_dir():
                raise DatasetNotFoundError(
                    f"Year folder {year_dir} does not exist.{_misplaced_root_hint(self.root, year)}\n{hint}"
                )
            for sub in ("Annotations", "JPEGImages"):
                if not (year_dir / sub).is_dir():
                    raise DatasetNotFoundError(f"Folder {year_dir / sub} does not exist.\n{hint}")
            set_file = year_dir / "ImageSets" / "Main" / f"{self.image_set}.txt"
            if not set_file.is_file():
                main = year_dir / "ImageSets" / "Main"
                have = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem) if main.is_dir() else []
                avail = f" Image sets there: {', '.join(have)}." if have else ""
                raise DatasetNotFoundError(f"Image set file {set_file} does not exist.{avail}\n{hint}")
            set_files.append(set_file)
        return set_files

    def _resolve_classes(self, classes: Sequence[str] | None) -> list[str]:
        if classes is not None:
            return check_class_names(classes)
        files = {y: self.root / f"VOC{y}" / CLASSES_FILE for y in self.years}
        found = {y: read_classes_file(f) for y, f in files.items() if f.is_file()}
        if not found:
            return list(VOC_CLASSES)
        if len(found) != len(self.years) or len({tuple(v) for v in found.values()}) > 1:
            listing = "; ".join(f"VOC{y}: {found[y] if y in found else 'no classes.txt (the 20 VOC classes)'}"
                                for y in self.years)
            raise DatasetError(f"The year folders disagree on the class list ({listing}). Make their {CLASSES_FILE} "
                             "files equal, or pass classes=[…] explicitly.")
        return next(iter(found.values()))

    def _segmentation_png(self, year: str, voc_id: str, folder: str = OBJECT_DIR) -> Path:
        return self.root / f"VOC{year}" / folder / f"{voc_id}.png"

    def _segmented(self, ids: list[str], year_of: list[int], sizes: np.ndarray, parts: list[_Parsed],
                   on_bad_image: str) -> np.ndarray:
        """Which images to keep with masks (bool (n,)): those with an object PNG, their PNGs checked (a thread pool:
        PNG decoding releases the GIL). Bad ones stop the build, or are left out under `on_bad_image="skip"`."""
        years = [self.years[y] for y in year_of]
        has = np.asarray([self._segmentation_png(y, i).is_file() for y, i in zip(years, ids)], dtype=bool)
        where = f"{self.root} ({self.image_set} of VOC{'+'.join(self.years)})"
        if not has.any():
            raise DatasetError(
                f"{where}: with_masks=True needs {OBJECT_DIR}/<id>.png files, and none of the {len(ids)} images has "
                f"one (looked in {', '.join(str(self.root / f'VOC{y}' / OBJECT_DIR) for y in self.years)}). VOC2012 "
                "has them for its segmentation images (image_set=train or val of years=['2012']); or train a box "
                "model on this data.")
        logger.info(f"{where}: {int(has.sum())} of {len(ids)} images have {OBJECT_DIR} PNGs; with masks, only those "
                    "are used")

        def check(i: int) -> str | None:
            y, voc_id = years[i], ids[i]
            return check_segmentation_pngs(self._segmentation_png(y, voc_id),
                                           self._segmentation_png(y, voc_id, CLASS_DIR), parts[i].labels,
                                           tuple(int(v) for v in sizes[i]), f"image {voc_id}")

        todo = np.flatnonzero(has).tolist()
        with ThreadPoolExecutor(max(1, min(default_workers(), len(todo)))) as pool:
            found = list(pool.map(check, todo))
        problems = MaskProblems(where, on_bad_image)
        for i, problem in zip(todo, found):
            if problem is not None:
                problems.add(problem, dropped=len(parts[i].labels))
                has[i] = False
        self.box_report = problems.finish(getattr(self, "box_report", {}))
        return has

    def _object_png(self, row: int) -> np.ndarray:
        """The object PNG of `row`, decoded (a file changed since the build is reported as a bad file)."""
        path = self._segmentation_png(self.years[self._year_of[row]], self._voc_ids[row])
        try:
            return read_index_png(path, f"image {self._voc_ids[row]}")
        except DatasetError as e:
            raise BadImageError(path, str(e)) from None

    # ------------------------------------------------------------------ metadata

    @property
    def ids(self) -> list[str]:
        """The VOC string ids of the samples, in order."""
        return self._voc_ids

    def _file_name(self, row: int) -> str:
        return f"VOC{self.years[self._year_of[row]]}/JPEGImages/{self._voc_ids[row]}.jpg"

    def _describe(self, row: int) -> str:
        return f"id {self._voc_ids[row]}"

    def get_annotation(self, index: int) -> dict[str, Any]:
        """Ground truth of one image for evaluation, difficult objects included (flagged), boxes unclipped.

        ``{"image_id": int, "boxes": float32 (N, 4) XYXY, "labels": int64 (N,), "difficult": bool (N,),
        "truncated": bool (N,)}``.
        """
        row = self._row(index)
        s = self._objects(row)
        return {**self._ground_truth(row), "difficult": self._difficult[s].copy(),
                "truncated": self._truncated[s].copy()}

    def _build_coco(self) -> COCO:
        """The ground truth as a pycocotools index, so the COCO evaluator also runs on VOC.

        Category ids are ``1..K`` (``label_to_cat_id``), image ids are ``image_id``. Difficult objects are marked
        ``iscrowd=1``: pycocotools derives "ignore" from ``iscrowd`` for bbox evaluation, so this is the only way to
        make them neither hits nor misses. It is an approximation of VOC's rule (a crowd region is matched by
        intersection over the *detection's* area, and may absorb several detections), used only when COCO metrics
        are asked for on VOC data; the VOC metrics use :meth:`get_annotation`.
        """
        images, anns = [], []
        segms = self._coco_segmentations() if self.with_masks else None
        for row in range(len(self)):
            images.append(self._info(row))
            s = self._objects(row)
            new = box_annotations(images[-1]["id"], self._boxes[s].tolist(), self._labels[s].tolist(),
                                  len(anns) + 1, iscrowd=self._difficult[s].tolist())
            if segms is not None:
                for ann, (rle, area) in zip(new, segms[row]):
                    # the mask's pixel count is the area, as in COCO; an object without pixels in the PNG (void,
                    # or not segmented) cannot be matched by a mask: ignored, like a difficult one
                    ann.update(segmentation=rle, area=float(area), iscrowd=int(ann["iscrowd"] or area == 0))
            anns += new
        return coco_index({"images": images, "annotations": anns, "categories": self._categories(lambda _: "voc")})

    def _coco_segmentations(self) -> list[list[tuple[dict[str, Any], int]]]:
        """Per row, each object's mask as compressed RLE and its pixel count, from the object PNGs (read now, on
        the first use of `coco`, in a thread pool; nothing is kept but the RLEs of the index)."""
        def one(row: int) -> list[tuple[dict[str, Any], int]]:
            masks = object_masks(self._object_png(row), self._xml_index[self._objects(row)])
            return [(encode_mask(m), int(m.sum())) for m in masks]

        with ThreadPoolExecutor(max(1, min(default_workers(), len(self)))) as pool:
            return list(pool.map(one, range(len(self))))

    # ------------------------------------------------------------------ samples

    def _training_boxes(self, row: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Difficult objects stay out unless ``keep_difficult``. `difficult`/`truncated` are not put in the
        target: transforms that drop or add boxes (crops, Mosaic, SanitizeBoundingBoxes) keep only boxes and labels
        aligned. Evaluation reads the flags through get_annotation / coco."""
        s = self._objects(row)
        keep = slice(None) if self.keep_difficult else ~self._difficult[s]
        return clip_boxes(self._boxes[s][keep], self._labels[s][keep], height, width)

    def _training_instances(self, row: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self._objects(row)
        rows = np.arange(s.start, s.stop)
        if not self.keep_difficult:
            rows = rows[~self._difficult[s]]
        boxes, keep = usable_boxes(self._boxes[rows], h, w)
        rows = rows[keep]
        objects = self._object_png(row)
        if objects.shape != (h, w):
            path = self._segmentation_png(self.years[self._year_of[row]], self._voc_ids[row])
            raise BadImageError(path, f"it is {objects.shape[1]}x{objects.shape[0]} but its image (id "
                                      f"{self._voc_ids[row]}) decodes to {w}x{h}; they must match")
        masks = object_masks(objects, self._xml_index[rows])
        return boxes[keep], self._labels[rows], masks

    def _repr_fields(self) -> dict[str, Any]:
        return {"root": str(self.root), "years": self.years, "image_set": self.image_set, **super()._repr_fields()}
