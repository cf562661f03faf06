"""Pascal VOC segmentation PNGs: ``SegmentationObject/<id>.png`` (pixel value ``i`` = the ``i``-th object of the
image's XML file, 1-based) and ``SegmentationClass/<id>.png`` (value = class index + 1), 0 background, 255 void
(object borders and unlabelled regions, part of no mask), stored as palette PNGs with the VOC colour map.

`check_segmentation_pngs` reads both PNGs of one image when the dataset is built (so a bad file stops the build, or
is left out under `dataset.on_bad_image=skip`, instead of failing mid-epoch); `read_object_png` decodes the object
PNG again per sample, and `object_masks` cuts it into one mask per XML object.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from framework.data.errors import DatasetError

__all__ = ["OBJECT_DIR", "CLASS_DIR", "SEGMENTATION_SETS", "VOID", "check_segmentation_pngs", "object_masks",
           "read_index_png", "voc_palette", "write_index_png"]

OBJECT_DIR = "SegmentationObject"
CLASS_DIR = "SegmentationClass"
SEGMENTATION_SETS = "ImageSets/Segmentation"
VOID = 255
_INDEX_MODES = ("P", "L")  # VOC's palette PNGs; a greyscale PNG of the same indices is read the same way


def voc_palette() -> list[int]:
    """The VOC colour map as a flat list of 256 RGB triples: the bits of index ``i`` are spread over the high bits
    of the three channels (bit 0 → red, bit 1 → green, bit 2 → blue, then the next bit of each one lower), so
    neighbouring indices get distinct colours; 255 (void) comes out as (224, 224, 192)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


_PALETTE = voc_palette()


def write_index_png(path: Path, indices: np.ndarray) -> None:
    """Save (H, W) indices 0..255 as a palette PNG with the VOC colours, as VOC ships its segmentation PNGs."""
    img = Image.fromarray(np.asarray(indices, dtype=np.uint8), mode="P")
    img.putpalette(_PALETTE)
    img.save(path, format="PNG")


def read_index_png(path: Path, what: str) -> np.ndarray:
    """The (H, W) uint8 indices of a palette (or greyscale) PNG; any failure is a DatasetError naming the file and
    `what` (the image it belongs to)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in _INDEX_MODES:
                raise DatasetError(f"{path} ({what}) has image mode {img.mode!r}, expected a palette PNG of indices "
                                   "(as VOC's SegmentationObject / SegmentationClass files)")
            return np.array(img, dtype=np.uint8)
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{path} ({what}) does not exist") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, zlib errors… depending on the damage
        raise DatasetError(f"Could not decode {path} ({what}): {str(e).strip() or type(e).__name__}") from None


def check_segmentation_pngs(object_png: Path, class_png: Path, labels: np.ndarray, size: tuple[int, int],
                            what: str) -> str | None:
    """What is wrong with one image's segmentation PNGs, or None.

    `labels` are the image's XML objects' labels in file order, `size` its (height, width). The object PNG must
    have that size and hold no index above the number of objects; the class PNG, where there is one, must have the
    size too, and each object's pixels must be mostly of its XML class (``label + 1``; void pixels aside), which is
    what ties the PNG's indices to the XML objects."""
    try:
        objects = read_index_png(object_png, what)
        if objects.shape != tuple(size):
            return (f"{object_png} ({what}) is {objects.shape[1]}x{objects.shape[0]} but its image is "
                    f"{size[1]}x{size[0]} (width x height); they must match")
        present = np.unique(objects)
        present = present[(present != 0) & (present != VOID)]
        if len(present) and int(present[-1]) > len(labels):
            return (f"{object_png} ({what}) has object index {int(present[-1])}, but its XML file lists "
                    f"{len(labels)} object{'s' if len(labels) != 1 else ''} (index i is the i-th <object>)")
        if not class_png.is_file():
            return None
        classes = read_index_png(class_png, what)
        if classes.shape != objects.shape:
            return (f"{class_png} ({what}) is {classes.shape[1]}x{classes.shape[0]} but its {OBJECT_DIR} PNG is "
                    f"{objects.shape[1]}x{objects.shape[0]}; they must match")
        for index in present.tolist():
            values = classes[objects == index]
            values = values[values != VOID]
            if not len(values):
                continue
            found = int(np.bincount(values).argmax())
            if found != int(labels[index - 1]) + 1:
                return (f"{class_png} ({what}) gives object {index} class index {found}, but its XML <object> "
                        f"{index} has class index {int(labels[index - 1]) + 1}; the PNGs do not match the XML file")
    except DatasetError as e:
        return str(e)
    return None


def object_masks(objects: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 masks, mask ``n`` being the pixels of XML object ``indices[n]`` (1-based) in an object PNG."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1, 1, 1)
    return (objects[None] == indices).astype(np.uint8)
