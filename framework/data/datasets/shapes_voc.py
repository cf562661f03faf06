"""The synthetic shapes dataset written in Pascal VOC layout.

Same pictures as the COCO layout of the same seed (both come from :func:`~framework.data.datasets.shapes.render_shapes`
with :func:`~framework.data.datasets.shapes.split_rng`), so ``dataset=voc07`` can be tried and compared with
``dataset=shapes`` without downloading VOC::

    python tools/make_shapes.py --layout voc
    python tools/train.py dataset=voc07 dataset.root=data/shapes_voc dataset.num_classes=4

Layout written by :func:`write_shapes_voc` (``root`` plays the part of ``VOCdevkit``)::

    root/VOC2007/
    ├── Annotations/000001.xml …
    ├── ImageSets/Main/train.txt, val.txt, trainval.txt, test.txt
    ├── ImageSets/Segmentation/train.txt, val.txt, trainval.txt, test.txt   (the same lists: all are segmented)
    ├── JPEGImages/000001.jpg …
    ├── SegmentationClass/000001.png …     class index + 1 per pixel (palette PNG, VOC colours), 0 background
    ├── SegmentationObject/000001.png …    object index i (the i-th <object> in the XML) per pixel, 0 background
    └── classes.txt          circle, square, triangle, cross (read by VOCDetection instead of the 20 VOC classes)

The segmentation PNGs hold each object's exact painted pixels (where shapes overlap, the one painted last; the
box of each object's pixels is its ``<bndbox>``), as VOC2012 ships them for its segmentation images, less the void
(255) borders VOC draws around objects: ``VOCDetection(with_masks=True)`` reads them.

Image sets: ``train`` and ``val`` are the COCO layout's train and val splits; ``trainval`` is both and ``test`` is
``val`` again, so the presets that train on ``trainval`` and evaluate on ``test`` (voc07, voc0712) and the one
that trains on ``train`` and evaluates on ``val`` (voc12, with ``year="2012"``) all run unchanged. Image ids number
the train images first (``000001`` … ``num_train``), then the val ones, as VOC2007 shares one numbering across its
splits; val image ``k`` of the COCO layout is ``f"{num_train + k:06d}"`` here, and its JPEG has the same bytes.

Annotation rules, chosen so the VOC-specific flags are exercised (they have no counterpart in the COCO layout):

* ``<bndbox>``: the VOC 1-based inclusive convention, from the COCO box ``[x, y, w, h]`` (integer pixels, painted
  pixels ``x .. x+w-1``): ``xmin = x + 1``, ``xmax = x + w``; likewise for y.
* ``<difficult>1</difficult>`` for objects whose box is shorter than ``DIFFICULT_SIDE`` (20) pixels on its shorter
  side: about one object in ten at the default sizes (16–64 px).
* ``<truncated>1</truncated>`` when the box touches the image border.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from framework.data.datasets.shapes import SHAPES_CLASSES, atomic_dir, check_render_args, render_shapes, split_rng
from framework.data.datasets.voc import CLASSES_FILE as CLASSES_NAME
from framework.data.datasets.voc_masks import CLASS_DIR, OBJECT_DIR, SEGMENTATION_SETS, write_index_png

__all__ = ["DIFFICULT_SIDE", "write_shapes_voc"]

DIFFICULT_SIDE = 20  # boxes with a shorter side below this many pixels are marked difficult

_OURS = {"Annotations", "ImageSets", "JPEGImages", OBJECT_DIR, CLASS_DIR, CLASSES_NAME}


def _xml(year: str, image_id: str, width: int, height: int, objects: list[dict[str, Any]],
         database: str = "Synthetic shapes (framework.data.datasets.shapes)", segmented: bool = False) -> str:
    """One annotation file, laid out like the official VOC2007 ones (fixed text: deterministic bytes); also what
    framework.data.convert writes, with its own `database`."""
    lines = [
        "<annotation>",
        f"\t<folder>VOC{escape(year)}</folder>",
        f"\t<filename>{escape(image_id)}.jpg</filename>",
        "\t<source>",
        f"\t\t<database>{escape(database)}</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        f"\t<segmented>{int(segmented)}</segmented>",
    ]
    for o in objects:
        lines += [
            "\t<object>",
            f"\t\t<name>{escape(o['name'])}</name>",
            "\t\t<pose>Unspecified</pose>",
            f"\t\t<truncated>{o['truncated']}</truncated>",
            f"\t\t<difficult>{o['difficult']}</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{o['xmin']}</xmin>",
            f"\t\t\t<ymin>{o['ymin']}</ymin>",
            f"\t\t\t<xmax>{o['xmax']}</xmax>",
            f"\t\t\t<ymax>{o['ymax']}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _voc_object(ann: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """A COCO-style shapes annotation (integer XYWH box of the painted pixels) as VOC object fields."""
    x, y, w, h = (int(round(v)) for v in ann["bbox"])
    return {
        "name": SHAPES_CLASSES[int(ann["category_id"]) - 1],
        "xmin": x + 1,
        "ymin": y + 1,
        "xmax": x + w,
        "ymax": y + h,
        "difficult": int(min(w, h) < DIFFICULT_SIDE),
        "truncated": int(x <= 0 or y <= 0 or x + w >= width or y + h >= height),
    }


def _looks_like_ours(year_dir: Path) -> bool:
    """Only a year folder we could have written may be replaced (it has our classes.txt); never a real VOC copy."""
    names = {p.name for p in year_dir.iterdir()}
    return CLASSES_NAME in names and names <= _OURS



def write_shapes_voc(
    root: str | Path,
    num_train: int = 2000,
    num_val: int = 300,
    seed: int = 0,
    year: str = "2007",
    **render_kwargs: Any,
) -> Path:
    """Write the shapes dataset as ``root/VOC<year>/…`` (see the module docstring) and return ``root``.

    ``render_kwargs`` go to :func:`~framework.data.datasets.shapes.render_shapes` (``min_side``, ``max_side``,
    ``max_objects``, ``image_size``); with the same arguments the pictures equal those of
    :func:`~framework.data.datasets.shapes.generate_shapes`. Deterministic: same arguments, same bytes. The year
    folder is written into a temporary sibling and moved into place, so an interrupted run leaves no half dataset;
    an existing shapes year folder is replaced, other year folders in ``root`` are left alone.
    """
    root = Path(root).expanduser().absolute()
    year = str(year)
    if num_train < 0 or num_val < 0:
        raise ValueError("num_train and num_val must be >= 0")
    if num_train + num_val > 999_999:
        raise ValueError("at most 999999 images: ids are 6 digits")
    unknown = set(render_kwargs) - {"min_side", "max_side", "max_objects", "image_size"}
    if unknown:
        raise TypeError(f"write_shapes_voc() got unexpected keyword argument(s) {sorted(unknown)}")
    image_size = check_render_args(**render_kwargs)
    if image_size is not None:
        render_kwargs["image_size"] = image_size
    if render_kwargs.get("max_objects", 0) > 254:
        raise ValueError("at most 254 objects per image: the segmentation PNGs index them in 8 bits (255 is void)")

    year_dir = root / f"VOC{year}"
    if year_dir.exists() and not (year_dir.is_dir() and _looks_like_ours(year_dir)):
        raise FileExistsError(
            f"{year_dir} exists and does not look like a shapes VOC folder (no {CLASSES_NAME}, or other entries "
            f"than {sorted(_OURS)}); refusing to overwrite it"
        )
    with atomic_dir(year_dir) as tmp:
        ann_dir, img_dir, set_dir = tmp / "Annotations", tmp / "JPEGImages", tmp / "ImageSets" / "Main"
        obj_dir, cls_dir, seg_set_dir = tmp / OBJECT_DIR, tmp / CLASS_DIR, tmp / SEGMENTATION_SETS
        for d in (ann_dir, img_dir, set_dir, obj_dir, cls_dir, seg_set_dir):
            d.mkdir(parents=True)
        splits: dict[str, list[str]] = {}
        next_id = 1
        for split, count in (("train", num_train), ("val", num_val)):
            ids: list[str] = []
            for img, anns, instances, _ in render_shapes(count, split_rng(seed, split), **render_kwargs):
                image_id = f"{next_id:06d}"
                next_id += 1
                # Same save arguments as the COCO layout: same pixels, same bytes.
                img.save(img_dir / f"{image_id}.jpg", format="JPEG", quality=95, subsampling=0, optimize=False)
                objects = [_voc_object(a, img.width, img.height) for a in anns]
                (ann_dir / f"{image_id}.xml").write_text(
                    _xml(year, image_id, img.width, img.height, objects, segmented=True), encoding="utf-8"
                )
                # object i + 1 is annotation i (XML order); its class index + 1 is its COCO category id
                write_index_png(obj_dir / f"{image_id}.png", instances)
                class_of = np.asarray([0] + [int(a["category_id"]) for a in anns], dtype=np.uint8)
                write_index_png(cls_dir / f"{image_id}.png", class_of[instances])
                ids.append(image_id)
            splits[split] = ids
        sets = {"train": splits["train"], "val": splits["val"], "trainval": splits["train"] + splits["val"],
                "test": splits["val"]}
        for name, ids in sets.items():
            for folder in (set_dir, seg_set_dir):
                (folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        (tmp / CLASSES_NAME).write_text("".join(f"{c}\n" for c in SHAPES_CLASSES), encoding="utf-8")
    return root
