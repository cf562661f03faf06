"""Convert a detection dataset between the YOLO, COCO and Pascal VOC layouts, in any direction.

Reading goes through the dataset classes (:class:`~framework.data.datasets.yolo.YOLODataset`,
:class:`~framework.data.datasets.coco.CocoDetection`, :class:`~framework.data.datasets.voc.VOCDetection`), so
whatever they accept converts, checked the same way (malformed files stop with the file and position). Each class's
``coco`` view is the common ground truth: images with their sizes, XYXY-convertible boxes, categories, ``iscrowd``
(COCO crowd regions; VOC's difficult objects) and polygons where the source has them.

Pixel conventions, per layout (the framework's boxes are continuous, pixel ``i`` covers ``[i, i+1)``):

* YOLO: ``class cx cy w h`` normalized by the image size (six decimals: sub-pixel for any image under 10⁶ px);
* COCO: ``bbox = [x, y, w, h]`` in the same continuous pixels (three decimals);
* VOC: 1-based inclusive integer pixels, ``xmin = x0 + 1, xmax = x1`` (see :mod:`~framework.data.datasets.voc`),
  rounded to whole pixels; and ``JPEGImages/<id>.jpg``, so other image formats are re-encoded as JPEG (quality 95).

Boxes are clipped to the image and those without area dropped (the source dataset has warned about them). Crowd
and difficult objects stay flagged in COCO (``iscrowd``) and VOC (``<difficult>``) and are left out of YOLO, which has
no flag for them (as ultralytics' own converters do). Images are symlinked into the new layout by default (absolute
links to the real files) or copied; everything is written into a temporary sibling of the output folder and moved
into place at the end, so an interrupted conversion leaves nothing half written.
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import yaml
from PIL import Image

from framework.data.datasets.box_report import CLIPPED, OK, check_boxes
from framework.data.datasets.coco import CocoDetection
from framework.data.datasets.roots import check_exists
from framework.data.datasets.shapes import atomic_dir
from framework.data.datasets.shapes_voc import _xml as voc_xml
from framework.data.datasets.voc import CLASSES_FILE, VOCDetection
from framework.data.datasets.yolo import YOLODataset, read_data_yaml
from framework.data.errors import DatasetError
from framework.data.scan import default_workers

__all__ = ["FORMATS", "Conversion", "convert", "default_splits", "open_split"]

FORMATS: tuple[str, ...] = ("yolo", "coco", "voc")
_VOC_SPLITS = ("train", "val", "test")
_JPEG = (".jpg", ".jpeg")
_DATABASE = "Converted by tools/convert_dataset.py"


# ------------------------------------------------------------------------------------------------ reading
def _coco_ann_files(src: Path) -> dict[str, Path]:
    """`annotations/instances_<split>.json` files of a COCO-layout folder, by split."""
    return {p.stem[len("instances_"):]: p for p in sorted((src / "annotations").glob("instances_*.json"))}


def _coco_img_dir(src: Path, split: str) -> str:
    """The image folder of a COCO split: `images/<split>` (our layout) or `<split>` (COCO 2017's)."""
    for candidate in (f"images/{split}", split, "images"):
        if (src / candidate).is_dir():
            return candidate
    raise DatasetError(f"No image folder for COCO split '{split}' in {src} (tried images/{split}, {split}, images); "
                       "name it with --img-dirs.")


def default_splits(fmt: str, src: str | Path, years: Sequence[str] = ("2007",)) -> list[str]:
    """The splits a source holds: a data.yaml's split keys (YOLO), the `instances_<split>.json` files (COCO), or
    those of train/val/test that every VOC year folder has an image-set file for."""
    src = check_exists(src, "Source dataset")
    if fmt == "yolo":
        return list(read_data_yaml(_data_yaml(src)).splits)
    if fmt == "coco":
        found = list(_coco_ann_files(src))
        if not found:
            raise DatasetError(f"No annotations/instances_<split>.json in {src}; name the files with --ann-files.")
        return found
    sets = [s for s in _VOC_SPLITS
            if all((src / f"VOC{y}" / "ImageSets" / "Main" / f"{s}.txt").is_file() for y in years)]
    if not sets:
        raise DatasetError(f"None of {', '.join(_VOC_SPLITS)} has an image-set file in "
                           f"{', '.join(str(src / f'VOC{y}' / 'ImageSets' / 'Main') for y in years)}; name the "
                           "image sets with --splits.")
    return sets


def _data_yaml(src: Path) -> Path:
    """A YOLO source is its data.yaml, or a folder holding one."""
    return src / "data.yaml" if src.is_dir() else src


def open_split(fmt: str, src: str | Path, split: str, years: Sequence[str] = ("2007",), ann_file: str | None = None,
               img_dir: str | None = None) -> Any:
    """One split of a source dataset, read by its dataset class (every image, every object)."""
    src = Path(src).expanduser()
    if fmt == "yolo":
        return YOLODataset(str(_data_yaml(src)), split=split)
    if fmt == "coco":
        return CocoDetection(str(src), ann_file or f"annotations/instances_{split}.json",
                             img_dir or _coco_img_dir(src, split))
    if fmt == "voc":
        return VOCDetection(str(src), years=list(years), image_set=split, keep_difficult=True)
    raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")


@dataclass
class _Record:
    """One image and its objects: clipped XYXY float64 boxes, contiguous labels, crowd/difficult flags, the COCO
    `segmentation` polygons of each object (None: none, or not polygons), and its `segmentation` as written
    (polygons or RLE, None: none), which a COCO output keeps."""

    path: Path
    image_id: int
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    crowd: np.ndarray
    polygons: list[list[list[float]] | None]
    segmentations: list[Any] | None = None


def _records(dataset: Any) -> Iterator[_Record]:
    coco, to_label = dataset.coco, dataset.cat_id_to_label
    for i in range(len(dataset)):
        info = dataset.get_image_info(i)
        h, w = int(info["height"]), int(info["width"])
        anns = [a for a in coco.imgToAnns.get(info["id"], []) if int(a["category_id"]) in to_label]
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        codes, clipped = check_boxes(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1), h, w)
        keep = (codes == OK) | (codes == CLIPPED)
        anns = [a for a, k in zip(anns, keep) if k]
        segs = [a.get("segmentation") for a in anns]
        yield _Record(Path(dataset.image_path(i)), int(info["id"]), h, w, clipped[keep].astype(np.float64),
                      np.array([to_label[int(a["category_id"])] for a in anns], dtype=np.int64),
                      np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
                      [s if isinstance(s, list) and s and isinstance(s[0], list) else None for s in segs], segs)


# ------------------------------------------------------------------------------------------------ writing
class _Names:
    """Unique file stems in one output folder: an image keeps its stem unless another image took it."""

    def __init__(self) -> None:
        self.by_path: dict[Path, str] = {}
        self.taken: set[str] = set()

    def take(self, path: Path) -> tuple[str, bool]:
        """(stem, new): `new` is False when `path` already has one (listed twice)."""
        key = path.resolve()
        if key in self.by_path:
            return self.by_path[key], False
        base = "_".join(path.stem.split()) or "image"  # VOC image-set files split lines on whitespace
        stem, k = base, 1
        while stem.lower() in self.taken:
            stem, k = f"{base}_{k}", k + 1
        self.taken.add(stem.lower())
        self.by_path[key] = stem
        return stem, True


@dataclass
class Conversion:
    """What a conversion wrote: per output split the images and objects, counts of what was changed or left out on
    the way (`notes`), and the command that trains on the result (`use`)."""

    out: Path
    to: str
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    use: str = ""

    def count(self, split: str, images: int = 0, objects: int = 0) -> None:
        entry = self.splits.setdefault(split, {"images": 0, "objects": 0})
        entry["images"] += images
        entry["objects"] += objects

    def note(self, what: str) -> None:
        self.notes[what] = self.notes.get(what, 0) + 1


class _Placer:
    """Puts image files into the new layout: absolute symlinks to the real files, or copies (in a thread pool)."""

    def __init__(self, copy: bool) -> None:
        self.copy = copy
        self.jobs: list[tuple[Path, Path, bool]] = []

    def add(self, src: Path, dst: Path, as_jpeg: bool = False) -> None:
        self.jobs.append((src, dst, as_jpeg))

    @staticmethod
    def _one(job: tuple[Path, Path, bool], copy: bool) -> None:
        src, dst, as_jpeg = job
        if as_jpeg:
            with Image.open(src) as im:
                im.convert("RGB").save(dst, format="JPEG", quality=95)
        elif copy:
            shutil.copyfile(src, dst)
        else:
            os.symlink(src.resolve(), dst)

    def run(self) -> None:
        for dst in {d.parent for _, d, _ in self.jobs}:
            dst.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=default_workers()) as pool:
            list(pool.map(lambda job: self._one(job, self.copy), self.jobs))


def _yolo_rows(r: _Record, polygons: bool, report: Conversion) -> list[str]:
    rows = []
    for box, label, crowd, seg in zip(r.boxes, r.labels.tolist(), r.crowd.tolist(), r.polygons):
        if crowd:
            report.note("crowd or difficult objects left out (YOLO has no flag for them)")
            continue
        if polygons and seg is not None and len(seg) == 1 and len(seg[0]) >= 6:
            xy = np.asarray(seg[0], dtype=np.float64).reshape(-1, 2) / (r.width, r.height)
            rows.append(f"{label} " + " ".join(f"{v:.6f}" for v in xy.clip(0, 1).reshape(-1)))
            continue
        if polygons and seg is not None:
            report.note("objects with a multi-part polygon written as boxes")
        x0, y0, x1, y1 = box.tolist()
        rows.append(f"{label} {(x0 + x1) / 2 / r.width:.6f} {(y0 + y1) / 2 / r.height:.6f} "
                    f"{(x1 - x0) / r.width:.6f} {(y1 - y0) / r.height:.6f}")
    return rows


def _write_yolo(tmp: Path, sources: dict[str, Any], classes: list[str], placer: _Placer, polygons: bool,
                report: Conversion) -> None:
    for split, dataset in sources.items():
        names = _Names()
        for r in _records(dataset):
            stem, new = names.take(r.path)
            if not new:
                continue
            placer.add(r.path, tmp / "images" / split / f"{stem}{r.path.suffix.lower()}")
            rows = _yolo_rows(r, polygons, report)
            label = tmp / "labels" / split / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")
            report.count(split, 1, len(rows))
    data = {**{split: f"images/{split}" for split in sources}, "nc": len(classes),
            "names": dict(enumerate(classes))}
    header = ("# Written by tools/convert_dataset.py. No `path`: the dataset root is this file's folder (for "
              "ultralytics too).\n")
    (tmp / "data.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                                   encoding="utf-8")


def _write_coco(tmp: Path, sources: dict[str, Any], classes: list[str], placer: _Placer,
                report: Conversion) -> None:
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(classes)]
    (tmp / "annotations").mkdir()
    for split, dataset in sources.items():
        names, images, anns = _Names(), [], []
        for r in _records(dataset):
            stem, new = names.take(r.path)
            if not new:
                continue
            file_name = f"{stem}{r.path.suffix.lower()}"
            placer.add(r.path, tmp / "images" / split / file_name)
            images.append({"id": r.image_id, "file_name": file_name, "height": r.height, "width": r.width})
            for box, label, crowd, seg in zip(r.boxes.tolist(), r.labels.tolist(), r.crowd.tolist(),
                                              r.segmentations or r.polygons):
                x0, y0, x1, y1 = box
                ann = {"id": len(anns) + 1, "image_id": r.image_id, "category_id": label + 1,
                       "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)],
                       "area": round((x1 - x0) * (y1 - y0), 3), "iscrowd": int(crowd)}
                if seg is not None:
                    ann["segmentation"] = seg
                anns.append(ann)
            report.count(split, 1, len(r.labels))
        data = {"info": {"description": _DATABASE, "split": split}, "images": images, "annotations": anns,
                "categories": categories}
        with open(tmp / "annotations" / f"instances_{split}.json", "w", encoding="utf-8") as f:
            json.dump(data, f)


def _voc_objects(r: _Record, classes: list[str]) -> list[dict[str, Any]]:
    """VOC object fields: 1-based inclusive integer pixels (xmin = x0 + 1, xmax = x1), crowd as difficult."""
    objects = []
    for box, label, crowd in zip(r.boxes.tolist(), r.labels.tolist(), r.crowd.tolist()):
        x0, y0, x1, y1 = box
        xmin, ymin = min(round(x0), r.width - 1) + 1, min(round(y0), r.height - 1) + 1
        objects.append({"name": classes[label], "xmin": xmin, "ymin": ymin, "xmax": max(round(x1), xmin),
                        "ymax": max(round(y1), ymin), "difficult": int(crowd), "truncated": 0})
    return objects


def _write_voc(tmp: Path, sources: dict[str, Any], classes: list[str], placer: _Placer, report: Conversion,
               year: str = "2007") -> None:
    year_dir = tmp / f"VOC{year}"
    ann_dir, img_dir, set_dir = year_dir / "Annotations", year_dir / "JPEGImages", year_dir / "ImageSets" / "Main"
    for d in (ann_dir, img_dir, set_dir):
        d.mkdir(parents=True)
    names = _Names()  # one id space for every split: an image in two image sets is written once
    for split, dataset in sources.items():
        ids: dict[str, None] = {}  # ordered, and quick to look up
        for r in _records(dataset):
            stem, new = names.take(r.path)
            if stem in ids:
                continue
            ids[stem] = None
            report.count(split, 1, len(r.labels))
            if not new:
                continue
            as_jpeg = r.path.suffix.lower() not in _JPEG
            if as_jpeg:
                report.note("images re-encoded as JPEG (VOC's JPEGImages/<id>.jpg)")
            placer.add(r.path, img_dir / f"{stem}.jpg", as_jpeg)
            (ann_dir / f"{stem}.xml").write_text(
                voc_xml(year, stem, r.width, r.height, _voc_objects(r, classes), _DATABASE), encoding="utf-8")
        (set_dir / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    (year_dir / CLASSES_FILE).write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")


def _train_val(splits: list[str]) -> tuple[str, str]:
    """Which output splits to train and evaluate on, for the command that uses the result."""
    train = next((s for s in ("train", "trainval") if s in splits), splits[0])
    val = next((s for s in ("val", "test", "valid") if s in splits and s != train), splits[-1])
    return train, val


def _use(to: str, out: Path, splits: list[str]) -> str:
    train, val = _train_val(splits)
    if to == "yolo":
        extra = "" if (train, val) == ("train", "val") else f" dataset.train.split={train} dataset.val.split={val}"
        return f"python tools/train.py dataset=yolo dataset.data={out / 'data.yaml'}{extra}"
    if to == "voc":
        return (f"python tools/train.py dataset=voc07 dataset.root={out} dataset.train.image_set={train} "
                f"dataset.val.image_set={val}")
    return (f"python tools/train.py dataset=coco dataset.root={out} " + " ".join(
        f"dataset.{key}.ann_file=annotations/instances_{s}.json dataset.{key}.img_dir=images/{s}"
        for key, s in (("train", train), ("val", val))))


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def convert(sources: dict[str, Any], to: str, out: str | Path, copy_images: bool = False, overwrite: bool = False,
            polygons: bool = False) -> Conversion:
    """Write the datasets of `sources` (output split name → dataset) in layout `to` under `out`.

    `out` must not exist or be empty, unless `overwrite` (then it is replaced once the new one is complete); it may
    not hold a source. `polygons` (YOLO output): write objects that have one polygon as polygon rows.
    """
    if to not in FORMATS:
        raise ValueError(f"unknown format {to!r}: choose one of {', '.join(FORMATS)}")
    if not sources:
        raise ValueError("nothing to convert: no splits given")
    out = Path(out).expanduser().absolute()
    classes = list(next(iter(sources.values())).classes)
    for split, dataset in sources.items():
        if list(dataset.classes) != classes:
            raise DatasetError(f"The splits disagree on the classes ({split}: {list(dataset.classes)}, others: "
                               f"{classes}); convert them separately.")
        if _inside(Path(dataset.root), out):
            raise DatasetError(f"The output folder {out} holds the source dataset {dataset.root}: write elsewhere.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty: choose a new folder, or pass --overwrite to replace it.")
    report = Conversion(out=out, to=to)
    placer = _Placer(copy_images)
    with atomic_dir(out) as tmp:
        if to == "yolo":
            _write_yolo(tmp, sources, classes, placer, polygons, report)
        elif to == "coco":
            _write_coco(tmp, sources, classes, placer, report)
        else:
            _write_voc(tmp, sources, classes, placer, report)
        placer.run()
    report.use = _use(to, out, list(sources))
    return report
