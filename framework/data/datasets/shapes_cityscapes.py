"""The synthetic shapes dataset written in Cityscapes layout.

Same pictures as the COCO layout of the same seed (both come from :func:`~framework.data.datasets.shapes.render_shapes`
with :func:`~framework.data.datasets.shapes.split_rng`), so ``dataset=cityscapes`` can be tried without the
Cityscapes download::

    python tools/make_shapes.py --layout cityscapes
    python tools/train.py dataset=cityscapes dataset.root=data/shapes_cityscapes

Layout written by :func:`write_shapes_cityscapes` (one city per split; frame ``k`` is image ``k`` of the COCO
layout's split, and ``CityscapesDetection`` gives it ``image_id`` ``k`` too)::

    root/
    ├── leftImg8bit/train/shapesville/shapesville_000000_000001_leftImg8bit.png …
    ├── leftImg8bit/val/shapesburg/shapesburg_000000_000001_leftImg8bit.png …
    ├── gtFine/train/shapesville/shapesville_000000_000001_gtFine_instanceIds.png, …_gtFine_polygons.json …
    ├── gtFine/val/shapesburg/…
    └── shapes_cityscapes.json      generator arguments; marks the folder as ours (safe to overwrite)

Classes. The 4 shapes become 4 of the 8 Cityscapes detection classes, one to one, so the task stays exactly as
learnable as the COCO layout (splitting a shape over two classes, e.g. by size, would make labels ambiguous)::

    circle   → person     (id 24, label 0)
    square   → car        (id 26, label 2)
    triangle → train      (id 31, label 5)
    cross    → bicycle    (id 33, label 7)

The targets are spread over the label range on purpose: both ends (0 and 7) and an id after the gap left by the
ignored caravan/trailer ids (29, 30) are exercised; rider, truck, bus and motorcycle have no objects, so their
per-class AP is NaN (no ground truth) and the mean is over the 4 present classes, as pycocotools does.

Groups. Every ``group_every``-th object of a split (objects counted in painting order over the whole split,
the 7th, 14th, … by default) is written as a Cityscapes group region: label ``"<class>group"`` in the polygons file
and the plain label id in the instance image, like the "cargroup" regions of real Cityscapes. The loader turns
these into crowd (ignore) regions, so that path is exercised by the synthetic data as well (about 1 object in 7).

Instance image. ``*_gtFine_instanceIds.png`` (16-bit) holds the exact painted pixels of every object, with
Cityscapes' encoding: ``label_id * 1000 + k`` for the ``k``-th instance of its class in the image (``k`` from 0, in
painting order), ``label_id`` for a group, the road id (7) elsewhere; where shapes overlap, the pixels belong to the
shape painted last. So each instance's mask, and the box the loader derives from it, equal the COCO layout's RLE and
box. The polygons file is consistent with it: each object's polygon is an outline that PIL fills into exactly the
shape's pixels (the shape's own vertices; for a circle, the centres of its edge pixels), so cityscapesscripts'
``json2instanceImg``, which draws the polygons in file order, writes the very same instance image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from framework.data.datasets.cityscapes import (
    CITYSCAPES_INSTANCE_LABELS,
    INSTANCE_IDS_SUFFIX,
    LEFT_SUFFIX,
    POLYGONS_SUFFIX,
)
from framework.data.datasets.shapes import SHAPES_CLASSES, atomic_dir, check_render_args, render_shapes, split_rng

__all__ = ["CITIES", "GROUP_EVERY", "MARKER", "SHAPE_TO_CITYSCAPES", "cityscapes_objects", "write_shapes_cityscapes"]

#: Shape class → Cityscapes class (see the module docstring).
SHAPE_TO_CITYSCAPES: dict[str, str] = {"circle": "person", "square": "car", "triangle": "train", "cross": "bicycle"}
GROUP_EVERY = 7  # every 7th object of a split is written as a group (crowd) region; 0: none
CITIES: dict[str, str] = {"train": "shapesville", "val": "shapesburg"}
MARKER = "shapes_cityscapes.json"

_LABEL_ID = {lb.name: lb.id for lb in CITYSCAPES_INSTANCE_LABELS}
_ROAD_ID = 7  # Cityscapes "road": the stuff class the background is labelled with
_OURS = {"leftImg8bit", "gtFine", MARKER}


def cityscapes_objects(
    anns: list[dict[str, Any]], outlines: list[list[tuple[float, float]]], width: int, height: int,
    first_index: int, group_every: int = GROUP_EVERY,
) -> list[dict[str, Any]]:
    """The ``objects`` of one image's polygons file, from its shapes annotations and outlines (painting order).

    ``first_index`` is the split-wide index of the image's first object (for the group rule). A "road" polygon
    covering the image comes first, like the stuff polygons that come before the objects in real Cityscapes files.
    """
    objects: list[dict[str, Any]] = [
        {"label": "road", "polygon": [[0, 0], [width, 0], [width, height], [0, height]]}
    ]
    for n, (ann, outline) in enumerate(zip(anns, outlines), start=first_index):
        name = SHAPE_TO_CITYSCAPES[SHAPES_CLASSES[int(ann["category_id"]) - 1]]
        group = group_every > 0 and n % group_every == group_every - 1
        objects.append({
            "label": name + "group" if group else name,
            "polygon": [[int(x) if float(x).is_integer() else x, int(y) if float(y).is_integer() else y]
                        for x, y in outline],
        })
    return objects


def _instance_image(objects: list[dict[str, Any]], instances: np.ndarray) -> Image.Image:
    """The 16-bit instance-id image: every object's exact pixels (`instances`, 1-based in `objects[1:]` order)
    with its Cityscapes id, road elsewhere."""
    counts: dict[str, int] = {}
    values = np.zeros(len(objects), dtype=np.uint16)  # values[k]: object k's id (objects[0] is the road)
    values[0] = _ROAD_ID
    for k, obj in enumerate(objects[1:], start=1):
        label = obj["label"]
        if label.endswith("group") and label not in _LABEL_ID:
            values[k] = _LABEL_ID[label[: -len("group")]]
        else:
            values[k] = _LABEL_ID[label] * 1000 + counts.get(label, 0)
            counts[label] = counts.get(label, 0) + 1
    # Pillow writes 16-bit greyscale PNGs from uint16 arrays ("I;16"); ids are < 34000
    return Image.fromarray(values[instances])


def _looks_like_ours(root: Path) -> bool:
    """Only a folder we could have written may be replaced (it has our marker); never a real Cityscapes copy."""
    names = {p.name for p in root.iterdir()}
    return MARKER in names and names <= _OURS


def write_shapes_cityscapes(
    root: str | Path,
    num_train: int = 2000,
    num_val: int = 300,
    seed: int = 0,
    group_every: int = GROUP_EVERY,
    **render_kwargs: Any,
) -> Path:
    """Write the shapes dataset in Cityscapes layout under ``root`` (see the module docstring) and return it.

    ``render_kwargs`` go to :func:`~framework.data.datasets.shapes.render_shapes` (``min_side``, ``max_side``,
    ``max_objects``, ``image_size``); with the same arguments the pictures equal those of
    :func:`~framework.data.datasets.shapes.generate_shapes` (here as lossless PNG). Deterministic: same arguments,
    same bytes. Everything is written into a temporary sibling folder that is then moved into place, so an
    interrupted run leaves no half dataset; an existing shapes Cityscapes folder (one with ``shapes_cityscapes.json``)
    or an empty folder is replaced, anything else is refused.
    """
    root = Path(root).expanduser().absolute()
    if num_train < 0 or num_val < 0:
        raise ValueError("num_train and num_val must be >= 0")
    if max(num_train, num_val) > 999_999:
        raise ValueError("at most 999999 images per split: frame numbers are 6 digits")
    if group_every < 0:
        raise ValueError(f"group_every must be >= 0 (0: no groups), got {group_every}")
    unknown = set(render_kwargs) - {"min_side", "max_side", "max_objects", "image_size"}
    if unknown:
        raise TypeError(f"write_shapes_cityscapes() got unexpected keyword argument(s) {sorted(unknown)}")
    image_size = check_render_args(**render_kwargs)
    if image_size is not None:
        render_kwargs["image_size"] = image_size
    if root.exists() and not (root.is_dir() and (not any(root.iterdir()) or _looks_like_ours(root))):
        raise FileExistsError(
            f"{root} exists and does not look like a shapes Cityscapes folder (no {MARKER}, or other entries than "
            f"{sorted(_OURS)}); refusing to overwrite it"
        )

    with atomic_dir(root) as tmp:
        for split, count in (("train", num_train), ("val", num_val)):
            city = CITIES[split]
            img_dir = tmp / "leftImg8bit" / split / city
            ann_dir = tmp / "gtFine" / split / city
            img_dir.mkdir(parents=True)
            ann_dir.mkdir(parents=True)
            next_object = 0
            rendered = render_shapes(count, split_rng(seed, split), **render_kwargs)
            for frame, (img, anns, instances, outlines) in enumerate(rendered, 1):
                stem = f"{city}_000000_{frame:06d}"
                objects = cityscapes_objects(anns, outlines, img.width, img.height, next_object, group_every)
                next_object += len(anns)
                img.save(img_dir / f"{stem}{LEFT_SUFFIX}", format="PNG")  # no metadata: same pixels, same bytes
                _instance_image(objects, instances).save(ann_dir / f"{stem}{INSTANCE_IDS_SUFFIX}", format="PNG")
                polygons = {"imgHeight": img.height, "imgWidth": img.width, "objects": objects}
                (ann_dir / f"{stem}{POLYGONS_SUFFIX}").write_text(json.dumps(polygons, indent=4) + "\n",
                                                                  encoding="utf-8")
        info = {
            "description": "Synthetic shapes in Cityscapes layout (framework.data.datasets.shapes_cityscapes)",
            "generator": {"seed": seed, "num_train": num_train, "num_val": num_val, "group_every": group_every,
                          **{k: list(v) if isinstance(v, tuple) else v for k, v in sorted(render_kwargs.items())}},
            "classes": SHAPE_TO_CITYSCAPES,
            "cities": CITIES,
        }
        (tmp / MARKER).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return root
