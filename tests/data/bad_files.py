"""Damaged copies of the shapes dataset, as users' datasets get damaged: a download cut short, a file that is not a
picture, a picture replaced by another of a different size."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image


def copy_shapes(shapes_root: Path, dest: Path) -> Path:
    """A private copy of the session's shapes dataset, safe to damage."""
    shutil.copytree(shapes_root, dest)
    return dest


def image_file(root: Path, split: str, index: int) -> Path:
    """The file of image record `index` (in id order, as the dataset indexes them) of `split`."""
    data = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    record = sorted(data["images"], key=lambda r: r["id"])[index]
    return root / "images" / split / record["file_name"]


def write_garbage(path: Path) -> Path:
    """Bytes that are no image at all, under the file's own (.jpg) name."""
    path.write_bytes(b"<html>404 Not Found</html>" * 40)
    return path


def cut_tail(path: Path, keep: float = 0.6) -> Path:
    """Keep only the first `keep` of the file, as an interrupted download does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def as_truncated_png(root: Path, split: str, index: int) -> Path:
    """Convert image `index` of `split` to PNG, point its annotation record at it, and cut the PNG short."""
    jpg = image_file(root, split, index)
    png = jpg.with_suffix(".png")
    Image.open(jpg).convert("RGB").save(png)
    jpg.unlink()
    ann = root / "annotations" / f"instances_{split}.json"
    data = json.loads(ann.read_text())
    for record in data["images"]:
        if record["file_name"] == jpg.name:
            record["file_name"] = png.name
    ann.write_text(json.dumps(data))
    return cut_tail(png, 0.7)


def keep_first(root: Path, split: str, n: int) -> None:
    """Shorten `split` to its first `n` image records (and their annotations): a smaller, faster dataset."""
    ann = root / "annotations" / f"instances_{split}.json"
    data = json.loads(ann.read_text())
    data["images"] = sorted(data["images"], key=lambda r: r["id"])[:n]
    kept = {r["id"] for r in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
    ann.write_text(json.dumps(data))


def damaged_copy(shapes_root: Path, dest: Path) -> tuple[Path, list[Path]]:
    """A copy of the shapes dataset cut to 10 train and 4 val images, two of the train images damaged: a JPEG that
    is no image and a PNG cut short. Returns the root and the two files."""
    root = copy_shapes(shapes_root, dest)
    keep_first(root, "train", 10)
    keep_first(root, "val", 4)
    return root, [write_garbage(image_file(root, "train", 3)), as_truncated_png(root, "train", 7)]
