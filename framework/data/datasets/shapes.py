"""Embedded synthetic dataset: coloured shapes on textured backgrounds.

It exists so the whole pipeline (data → model → COCO evaluation) can be exercised and
*learned* on a CPU in minutes, without downloading anything. It is written as a real
COCO layout on disk, so it goes through exactly the same ``CocoDetection`` code path
and pycocotools evaluation as real data.

Layout written by :func:`generate_shapes`::

    root/
    ├── annotations/instances_train.json, instances_val.json
    └── images/train/000001.jpg …, images/val/000001.jpg …

Exact masks. Every annotation's ``segmentation`` is a compressed RLE (``iscrowd`` 0) of exactly the pixels its shape
left visible in the picture (where shapes overlap, the pixels belong to the one painted last), and its ``bbox`` is
the tight box of those pixels (``x + w`` = last column + 1), so a mask's box equals its box. RLE rather than
polygons: pycocotools rasterizes polygons by its own rule (not PIL's), and a partly covered shape can have notches
or several parts. The VOC and Cityscapes layouts (``shapes_voc.py``, ``shapes_cityscapes.py``) write the same masks
as their PNGs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from framework.data.datasets.coco import CocoDetection, layout_hint
from framework.data.datasets.roots import missing_path_error
from framework.data.datasets.segmentation import encode_mask

__all__ = ["DEFAULT_ROOT", "SHAPES_CLASSES", "Painted", "ShapesDataset", "atomic_dir", "generate_shapes",
           "is_default_root", "render_shapes", "split_rng"]

SHAPES_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

_SPLITS: tuple[str, ...] = ("train", "val")
_MIN_OBJ, _MAX_OBJ = 16, 64  # bounding-box side range of one shape, in pixels
_MAX_IOU = 0.3  # placements overlapping an earlier box more than this are rejected
_MAX_COVER = 0.5  # …as are those covering more than half of the smaller box
_MIN_CONTRAST = 100.0  # RGB distance from the local background / overlapped shapes
_PLACEMENT_TRIES = 30
_COLOUR_TRIES = 20
_MAX_ROTATION_DEG = {"square": 20.0, "triangle": 25.0, "cross": 20.0}


# --------------------------------------------------------------------------- drawing


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth two-colour gradient plus a low-contrast pattern (HxWx3 uint8).

    Flat backgrounds would let a detector learn "anything not flat is an object";
    the pattern forces it to learn shapes, while staying weak enough (±~15 levels)
    that the objects' contrast margin of ``_MIN_CONTRAST`` still holds.
    """
    c1 = rng.uniform(30.0, 225.0, size=3)
    c2 = np.clip(c1 + rng.uniform(-70.0, 70.0, size=3), 0.0, 255.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    proj = xx * math.cos(angle) + yy * math.sin(angle)
    t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
    img = c1[None, None, :] * (1.0 - t[..., None]) + c2[None, None, :] * t[..., None]

    kind = int(rng.integers(3))
    if kind == 0:  # stripes at a random angle and period
        a2 = rng.uniform(0.0, math.pi)
        period = rng.uniform(6.0, 20.0)
        amp = rng.uniform(6.0, 14.0)
        stripes = np.sin(2.0 * math.pi * (xx * math.cos(a2) + yy * math.sin(a2)) / period)
        img += amp * stripes[..., None]
    elif kind == 1:  # blotches: coarse noise upsampled bilinearly
        gh, gw = int(rng.integers(3, 7)), int(rng.integers(3, 7))
        coarse = rng.normal(0.0, 1.0, size=(gh, gw, 3)).astype(np.float32)
        amp = rng.uniform(8.0, 15.0)
        for c in range(3):
            up = Image.fromarray(np.ascontiguousarray(coarse[..., c])).resize(
                (w, h), Image.Resampling.BILINEAR
            )
            img[..., c] += amp * np.asarray(up)
    else:  # fine grain noise
        img += rng.normal(0.0, rng.uniform(4.0, 8.0), size=(h, w, 1))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _unit_polygon(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices (N, 2) of a shape centred at the origin, before scaling."""
    if kind == "square":
        pts = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
    elif kind == "triangle":
        s = math.sqrt(3.0) / 2.0
        pts = [(0.0, -1.0), (s, 0.5), (-s, 0.5)]
    elif kind == "cross":
        a = float(rng.uniform(0.25, 0.4))  # half arm thickness
        pts = [
            (-a, -1.0), (a, -1.0), (a, -a), (1.0, -a), (1.0, a), (a, a),
            (a, 1.0), (-a, 1.0), (-a, a), (-1.0, a), (-1.0, -a), (-a, -a),
        ]
    else:
        raise ValueError(f"not a polygon shape: {kind}")
    return np.asarray(pts, dtype=np.float64)


def _make_shape(
    kind: str, rng: np.random.Generator, h: int, w: int, max_obj: int
) -> dict[str, Any]:
    """Random geometry of one shape placed fully inside an (h, w) image.

    Returns ``{"kind", "polygon": (N,2) float array}`` plus ``"ellipse": [x0,y0,x1,y1]``
    for circles (whose 32-gon polygon is never drawn).
    """
    side = float(rng.uniform(_MIN_OBJ, max_obj))
    if kind == "circle":
        d = int(round(side))
        x0 = int(rng.integers(0, w - d + 1))
        y0 = int(rng.integers(0, h - d + 1))
        cx, cy, r = x0 + d / 2.0, y0 + d / 2.0, d / 2.0
        ang = np.linspace(0.0, 2.0 * math.pi, 32, endpoint=False)
        poly = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], axis=1)
        # PIL's ellipse box is inclusive: pixels x0..x0+d-1 are painted.
        return {"kind": kind, "polygon": poly, "ellipse": [x0, y0, x0 + d - 1, y0 + d - 1]}
    pts = _unit_polygon(kind, rng)
    theta = math.radians(float(rng.uniform(-1.0, 1.0)) * _MAX_ROTATION_DEG[kind])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    pts = pts @ rot.T
    extent = float((pts.max(0) - pts.min(0)).max())
    pts = pts * ((side - 1.0) / extent)  # painted pixels span about `side`
    lo, hi = pts.min(0), pts.max(0)
    ox = rng.uniform(-lo[0], (w - 1) - hi[0])
    oy = rng.uniform(-lo[1], (h - 1) - hi[1])
    return {"kind": kind, "polygon": pts + np.array([ox, oy])}


def _draw_shape(draw: ImageDraw.ImageDraw, shape: dict[str, Any], fill: Any) -> None:
    """Paint one shape; used both on the image and on its mask so they agree pixel-exactly."""
    if shape["kind"] == "circle":
        draw.ellipse(shape["ellipse"], fill=fill)
    else:
        draw.polygon([(float(x), float(y)) for x, y in shape["polygon"]], fill=fill)


def _shape_mask_box(shape: dict[str, Any], h: int, w: int) -> tuple[tuple[int, int, int, int], int]:
    """Tight box (x0, y0, x1, y1 exclusive) and pixel area of the painted shape.

    Measured on a rendered mask rather than derived from the geometry, so the
    annotation is exactly the painted pixels whatever PIL's rounding rules are.
    """
    mask = Image.new("L", (w, h), 0)
    _draw_shape(ImageDraw.Draw(mask), shape, 255)
    box = mask.getbbox()
    if box is None:  # cannot happen for sides >= 16 px, guard anyway
        return (0, 0, 0, 0), 0
    area = int(np.count_nonzero(np.asarray(mask.crop(box))))
    return box, area


def _overlap_ok(box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]]) -> bool:
    """Limit overlap so every object stays mostly visible."""
    ax0, ay0, ax1, ay1 = box
    a_area = (ax1 - ax0) * (ay1 - ay0)
    for bx0, by0, bx1, by1 in placed:
        iw = min(ax1, bx1) - max(ax0, bx0)
        ih = min(ay1, by1) - max(ay0, by0)
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        b_area = (bx1 - bx0) * (by1 - by0)
        if inter / (a_area + b_area - inter) > _MAX_IOU or inter > _MAX_COVER * min(a_area, b_area):
            return False
    return True


def _pick_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> tuple[int, int, int]:
    """A random colour at least ``_MIN_CONTRAST`` away from every colour in ``avoid``.

    Falls back to the best of the tries, which in practice is still far away.
    """
    best, best_d = None, -1.0
    for _ in range(_COLOUR_TRIES):
        c = rng.integers(0, 256, size=3).astype(np.float64)
        d = min(float(np.linalg.norm(c - a)) for a in avoid)
        if d > best_d:
            best, best_d = c, d
        if d > _MIN_CONTRAST:
            break
    assert best is not None
    return int(best[0]), int(best[1]), int(best[2])


class Painted(NamedTuple):
    """One generated picture and its ground truth, for every layout writer.

    ``annotations``: COCO-style dicts (``category_id`` 1..4, ``bbox`` XYWH, ``area``, ``iscrowd`` 0,
    ``segmentation`` as compressed RLE), in painting order: later objects may partly cover earlier ones.
    ``instances``: (H, W) int32, ``k + 1`` on the pixels where annotation ``k`` is visible, 0 elsewhere; each
    annotation's RLE, box (``x + w`` = last column + 1) and area are exactly these pixels.
    ``outlines``: per annotation, a polygon (x, y points) whose PIL fill (``ImageDraw.polygon``) is exactly the
    shape's painted pixels before later shapes covered it; drawn in order, they give ``instances`` again (what the
    Cityscapes layout's polygons file relies on).
    """

    image: Image.Image
    annotations: list[dict[str, Any]]
    instances: np.ndarray
    outlines: list[list[tuple[float, float]]]


def _render_image(
    rng: np.random.Generator,
    min_side: int,
    max_side: int,
    max_objects: int,
    image_size: tuple[int, int] | None = None,
) -> Painted:
    """One image and its annotations (without ids): of random size, or ``image_size`` (height, width) if given."""
    if image_size is None:
        h = int(rng.integers(min_side, max_side + 1))
        w = int(rng.integers(min_side, max_side + 1))
    else:
        h, w = image_size
    return _paint_shapes(rng, _background(rng, h, w), max_objects)


def _outline(shape: dict[str, Any], h: int, w: int) -> list[tuple[float, float]]:
    """A polygon PIL fills into exactly the pixels `_draw_shape` paints for `shape`.

    A polygon shape is its own outline (unrounded: rounding could move a pixel across an edge). A circle, painted
    with ``ImageDraw.ellipse``, is traced through the centres of its leftmost pixels top to bottom, then of its
    rightmost ones back up: PIL fills each row between its edges, inclusive, so every row gets exactly its run
    (checked for every diameter the generator draws in tests/data/test_shapes_masks.py)."""
    if shape["kind"] != "circle":
        return [(float(x), float(y)) for x, y in shape["polygon"]]
    mask = Image.new("L", (w, h), 0)
    _draw_shape(ImageDraw.Draw(mask), shape, 1)
    pixels = np.asarray(mask) > 0
    rows = np.flatnonzero(pixels.any(axis=1))
    first = pixels[rows].argmax(axis=1)
    last = w - 1 - pixels[rows, ::-1].argmax(axis=1)
    left = list(zip(first.astype(float).tolist(), rows.astype(float).tolist()))
    right = list(zip(last[::-1].astype(float).tolist(), rows[::-1].astype(float).tolist()))
    return left + right


def _paint_shapes(rng: np.random.Generator, bg: np.ndarray, max_objects: int) -> Painted:
    """Paint 1..max_objects shapes on a background (HxWx3 uint8, left unchanged).

    Each accepted shape is painted on the picture and, with its index, on an instance map, by the same PIL call:
    the map ends up holding, per pixel, the last shape painted there, so each annotation's mask is exactly its
    visible pixels. A shape later ones hide completely (rare: placements overlap little) gets no annotation.
    """
    h, w = bg.shape[:2]
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    instance_map = Image.new("I", (w, h), 0)
    draw_instance = ImageDraw.Draw(instance_map)
    max_obj = min(_MAX_OBJ, min(h, w) - 2)

    n = int(rng.integers(1, max_objects + 1))
    boxes: list[tuple[int, int, int, int]] = []
    colours: list[np.ndarray] = []
    painted: list[tuple[int, dict[str, Any]]] = []
    for _ in range(n):
        cls = int(rng.integers(len(SHAPES_CLASSES)))
        kind = SHAPES_CLASSES[cls]
        for _try in range(_PLACEMENT_TRIES):
            shape = _make_shape(kind, rng, h, w, max_obj)
            box, area = _shape_mask_box(shape, h, w)
            if area > 0 and _overlap_ok(box, boxes):
                break
        else:
            continue  # crowded image: skip this object rather than hide another
        x0, y0, x1, y1 = box
        avoid = [bg[y0:y1, x0:x1].reshape(-1, 3).mean(0).astype(np.float64)]
        for (bx0, by0, bx1, by1), col in zip(boxes, colours):
            if min(x1, bx1) > max(x0, bx0) and min(y1, by1) > max(y0, by0):
                avoid.append(col)
        colour = _pick_colour(rng, avoid)
        _draw_shape(draw, shape, colour)
        _draw_shape(draw_instance, shape, len(painted) + 1)
        boxes.append(box)
        colours.append(np.asarray(colour, dtype=np.float64))
        painted.append((cls, shape))

    drawn = np.asarray(instance_map, dtype=np.int32)
    instances = np.zeros((h, w), dtype=np.int32)
    anns: list[dict[str, Any]] = []
    outlines: list[list[tuple[float, float]]] = []
    for k, (cls, shape) in enumerate(painted):
        visible = drawn == k + 1
        ys = np.flatnonzero(visible.any(axis=1))
        if not len(ys):
            continue  # hidden by later shapes
        xs = np.flatnonzero(visible.any(axis=0))
        x0, y0, x1, y1 = int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1
        instances[visible] = len(anns) + 1
        anns.append({
            "category_id": cls + 1,
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "area": float(np.count_nonzero(visible)),
            "iscrowd": 0,
            "segmentation": encode_mask(visible),
        })
        outlines.append(_outline(shape, h, w))
    return Painted(img, anns, instances, outlines)


# --------------------------------------------------------------------------- writing


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The random stream of one split: independent, derived streams, so changing num_train does not change val,
    and every layout (COCO, VOC, Cityscapes) of the same seed holds the same images."""
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLITS.index(split)]))


def check_render_args(min_side: int = 112, max_side: int = 160, max_objects: int = 5,
                      image_size: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Refuse arguments `render_shapes` cannot honour (every layout writer checks the same way); returns
    `image_size` as a tuple of ints."""
    if not 24 <= min_side <= max_side:
        raise ValueError(f"need 24 <= min_side <= max_side, got {min_side}, {max_side}")
    if max_objects < 1:
        raise ValueError("max_objects must be >= 1")
    if image_size is not None:
        if len(image_size) != 2 or min(image_size) < 24:
            raise ValueError(f"image_size must be (height, width), both >= 24, got {image_size}")
        image_size = (int(image_size[0]), int(image_size[1]))
    return image_size


def render_shapes(
    num_images: int,
    rng: np.random.Generator,
    min_side: int = 112,
    max_side: int = 160,
    max_objects: int = 5,
    image_size: tuple[int, int] | None = None,
) -> Iterator[Painted]:
    """The images of one split with their ground truth (see :class:`Painted`: COCO-style annotations with exact
    RLE masks, the instance map, the outlines), in painting order. Layout writers (COCO here, VOC and Cityscapes
    elsewhere) consume this, so every layout holds the same pictures and the same masks."""
    for _ in range(num_images):
        yield _render_image(rng, min_side, max_side, max_objects, image_size)


def _write_split(
    out: Path,
    split: str,
    num_images: int,
    rng: np.random.Generator,
    info: dict[str, Any],
    min_side: int,
    max_side: int,
    max_objects: int,
    image_size: tuple[int, int] | None = None,
) -> None:
    img_dir = out / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    rendered = render_shapes(num_images, rng, min_side, max_side, max_objects, image_size)
    for image_id, (img, anns, _, _) in enumerate(rendered, start=1):
        file_name = f"{image_id:06d}.jpg"
        # Fixed quality/subsampling and no metadata: same arguments → same bytes.
        img.save(img_dir / file_name, format="JPEG", quality=95, subsampling=0, optimize=False)
        images.append(
            {"id": image_id, "file_name": file_name, "width": img.width, "height": img.height}
        )
        for ann in anns:
            ann.update(id=len(annotations) + 1, image_id=image_id)
            annotations.append(ann)
    data = {
        "info": {**info, "split": split},
        "licenses": [
            {"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}
        ],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "shape"}
            for i, name in enumerate(SHAPES_CLASSES)
        ],
    }
    ann_dir = out / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    with open(ann_dir / f"instances_{split}.json", "w", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True, indent=1)
        f.write("\n")


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of `target` to write into; on success it replaces `target` in one rename.

    An interrupted run never leaves a half-written dataset that later runs would mistake for a complete one,
    and the previous folder is only removed once the new one is in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _looks_like_shapes(root: Path) -> bool:
    """Only folders we could have written may be replaced; never delete user data."""
    return root.is_dir() and all(p.name in {"annotations", "images"} for p in root.iterdir())


def generate_shapes(
    root: str | Path,
    num_train: int = 2000,
    num_val: int = 300,
    seed: int = 0,
    min_side: int = 112,
    max_side: int = 160,
    max_objects: int = 5,
    image_size: tuple[int, int] | None = None,
) -> Path:
    """Write the synthetic shapes dataset as a COCO layout under ``root`` and return it.

    Deterministic: the same arguments give byte-identical files, so results on it are
    comparable across machines. Everything is written into a temporary sibling folder
    that is then moved into place, so an interrupted run never leaves a half dataset
    that later runs would mistake for a complete one. An existing dataset at ``root``
    is replaced.

    ``image_size`` (height, width) gives every image exactly that size instead of sides drawn
    in [``min_side``, ``max_side``] (e.g. ``(480, 640)`` for pipeline benchmarks at a COCO-like size).
    """
    root = Path(root).expanduser().absolute()
    if num_train < 0 or num_val < 0:
        raise ValueError("num_train and num_val must be >= 0")
    image_size = check_render_args(min_side, max_side, max_objects, image_size)
    if root.exists() and not _looks_like_shapes(root):
        raise FileExistsError(
            f"{root} exists and does not look like a shapes dataset "
            "(only 'annotations/' and 'images/' expected); refusing to overwrite it"
        )

    info = {
        "description": "Synthetic shapes detection dataset (framework.data.datasets.shapes)",
        "version": "1.0",
        "year": 2024,
        "contributor": "framework",
        "generator": {
            "seed": seed,
            "num_train": num_train,
            "num_val": num_val,
            "min_side": min_side,
            "max_side": max_side,
            "max_objects": max_objects,
        },
    }
    if image_size is not None:  # only when set: default outputs stay byte-identical
        info["generator"]["image_size"] = list(image_size)
    with atomic_dir(root) as tmp:
        counts = {"train": num_train, "val": num_val}
        for split in _SPLITS:
            # Independent, derived streams: changing num_train does not change val.
            _write_split(tmp, split, counts[split], split_rng(seed, split), info, min_side, max_side, max_objects,
                         image_size)
    return root


# --------------------------------------------------------------------------- dataset


logger = logging.getLogger("framework")

#: The one root `ShapesDataset` generates by itself (configs/dataset/shapes.yaml's), relative to the working directory.
DEFAULT_ROOT = "data/shapes"


def is_default_root(root: str | Path) -> bool:
    """Whether `root` is `DEFAULT_ROOT`. Both are resolved against the working directory (`..` and symlinks
    followed), so `data/shapes`, `./data/shapes/` and the same folder's absolute path count; `data/shapez`, or a
    `data/shapes` below another folder, do not."""
    return Path(root).expanduser().resolve() == Path(DEFAULT_ROOT).resolve()


class ShapesDataset(CocoDetection):
    """The shapes dataset, generated on first use at the default root.

    Auto-generation makes ``dataset=shapes`` work out of the box on a fresh clone: smoke runs and tutorials need no
    download step. It happens only at ``DEFAULT_ROOT`` (``generate=None``): anywhere else a missing dataset is an
    error naming the path and the nearest existing folder, since a mistyped ``dataset.root=data/shapez`` must not
    silently train on a fresh synthetic set. ``generate=True`` generates at any ``root`` (an explicit opt-in),
    ``generate=False`` never.
    """

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        split: str = "train",
        transforms: Callable | None = None,
        filter_empty: bool = False,
        generate: bool | None = None,
        with_masks: bool = False,
        on_bad_image: str = "error",
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        ann_file, img_dir = f"annotations/instances_{split}.json", f"images/{split}"
        path = Path(root).expanduser()
        if not (path / ann_file).is_file():
            if generate or (generate is None and is_default_root(path)):
                print(f"Shapes dataset not found at {root}: generating it (takes a few seconds)…")
                generate_shapes(root)
            else:
                hint = layout_hint(path, ann_file, img_dir, advice=(
                    f"Only {DEFAULT_ROOT} (in the working directory: {Path(DEFAULT_ROOT).absolute()}) is generated "
                    f"on first use. Write one at {root} with `python tools/make_shapes.py --root {root}`, or "
                    "correct dataset.root."))
                missing = (path, "Shapes dataset root") if not path.is_dir() else (path / ann_file, "Annotation file")
                raise missing_path_error(*missing, hint)
        self.split = split
        super().__init__(root, ann_file, img_dir, transforms, filter_empty, with_masks, on_bad_image)
        segm = self._tables.segm
        if segm is not None and len(segm) and segm[0] == ord("["):  # polygons: written before masks were exact
            logger.warning(f"{root} was written by an older generator: its masks are polygons, within about 2 px of "
                           f"the painted shapes. Regenerate it for exact masks: python tools/make_shapes.py --root "
                           f"{root} --force")
