"""Check every image file of a dataset before training, so a bad file stops a run in its first seconds (or is left
out, `dataset.on_bad_image=skip`, or repaired, `repair`) instead of crashing a loader worker hours in.

What one file is checked for, cheapest first: it exists, it is not empty, PIL can identify it, its format is one
the loader decodes (`torchvision.io.decode_image`: JPEG, PNG, GIF, WEBP), `Image.verify()` passes (for PNG it
checks every chunk's CRC and the end of the stream, so a cut or corrupted PNG is found), and the header's size is
the annotation's height/width (otherwise the boxes were drawn on another picture).

JPEG: `verify()` does not read the compressed data, so a JPEG cut short passes it. As in ultralytics, the file
must end with the EOI marker (FF D9); only when it does not is the image fully decoded (PIL `load()`), which tells
a truncated file (fails) from a complete one with padding after its end (decodes; some cameras write such files,
and the loader reads them). Decoding every image would also find damage inside the compressed data, but costs an
order of magnitude more: measured on this project's 2-core CPU, warm cache, one thread, the default check takes
0.12-0.2 ms per image (shapes 150 px and 640x480 JPEGs alike: it reads the header and the last two bytes), a full
decode 0.35-0.6 ms on shapes and 2.0-2.5 ms at 640x480, i.e. about 20 s against 5 min for COCO train2017 (118k
images) before every run. The thorough mode is `scan_images(…, decode=True)` (`tools/check_dataset.py
decode=true`); a file that only fails there is still caught at load time by `on_bad_image`.

Repairable files (`dataset.on_bad_image=repair`): a JPEG cut short (a failed copy or download, a real set's most
common damage) whose header is intact still holds the top of its picture. `decode_truncated` decodes it as far as its
data goes; a bad JPEG it decodes is marked repairable, everything else (empty, not an image, header cut, a wrong
size) is not. Nor is a PNG cut short: PIL decodes one only under its process-wide truncation flag (see
`decode_truncated`). Sound files cost nothing more: only files already found bad are tried.

Files are checked in a thread pool: PIL's decoders release the GIL and file latency (network storage) overlaps.
"""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from PIL import Image, UnidentifiedImageError

__all__ = ["BadImage", "Finding", "LOADER_FORMATS", "REPAIRABLE_FORMATS", "check_image", "decode_truncated",
           "default_workers", "first_line", "scan_images"]

#: PIL format names of the files `torchvision.io.decode_image` reads (MPO: multi-picture JPEG from cameras).
LOADER_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP"})
#: Formats `decode_truncated` repairs: the JPEG family, whose end marker can be supplied.
REPAIRABLE_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO"})
_JPEG_END = b"\xff\xd9"


class Finding(NamedTuple):
    """What is wrong with one image file, and whether `dataset.on_bad_image=repair` can train on it anyway."""

    reason: str
    repairable: bool = False


class BadImage(NamedTuple):
    """One image the scan rejected: the sample `index` in its dataset, the file, why, and whether
    `dataset.on_bad_image=repair` can use it (a JPEG cut short)."""

    index: int
    path: Path
    reason: str
    repairable: bool = False


def default_workers() -> int:
    """Threads for a scan: more than the cores, since much of the time is spent waiting on the file system."""
    return min(16, (os.cpu_count() or 1) + 4)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (decoders append whole tracebacks of C code), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def decode_truncated(path: str | Path) -> Image.Image:
    """The picture a JPEG cut short still holds, as an RGB image: decoded as far as its data goes, the rest filled
    by the decoder (grey). Raises (OSError, ValueError…) when even that fails: the header is cut, or it is no JPEG.

    PIL does this under `ImageFile.LOAD_TRUNCATED_IMAGES`, a process-wide flag: set in one thread it would let every
    other decode in the process (the scan's other threads, the loader's) accept truncated files without a word.
    What the flag does for a JPEG is supply the missing end marker (FF D9); here the marker is appended to a private
    copy of the bytes, which gives the same pixels with nothing shared, so it is safe in threads and workers.
    """
    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data + _JPEG_END)) as im:
        if im.format not in REPAIRABLE_FORMATS:
            raise ValueError(f"only a JPEG cut short can be repaired, this is a {im.format} file")
        return im.convert("RGB")


def _decode_error(path: Path) -> str | None:
    """The error a full decode of `path` meets, or None when it decodes."""
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError… depending on the plugin
        return first_line(exc)
    return None


def _repairs(path: Path) -> bool:
    """Whether `decode_truncated` can decode `path`."""
    try:
        decode_truncated(path)
    except Exception:  # whatever the damage, it is not repairable
        return False
    return True


def check_image(path: str | Path, size: tuple[int, int] | None = None, decode: bool = False) -> Finding | None:
    """What makes the image file at `path` unfit for training, or None when it is fine.

    `size` is the (height, width) the annotations give (not checked when None); `decode=True` also decodes the
    whole image (see the module docstring for the cost). A file that fails to decode is tried with
    `decode_truncated` to tell whether it is repairable.
    """
    path = Path(path)
    try:
        if not path.is_file():
            return Finding("the file does not exist" if not path.exists() else "it is not a file")
        if path.stat().st_size == 0:
            return Finding("the file is empty")
        with open(path, "rb") as f:
            try:
                with Image.open(f) as im:
                    fmt, (width, height) = im.format or "?", im.size
                    if fmt not in LOADER_FORMATS:
                        return Finding(f"it is a {fmt} image, which the data loader cannot decode (torchvision "
                                       "reads JPEG, PNG, GIF and WEBP); convert it")
                    im.verify()
            except UnidentifiedImageError:
                return Finding("it is not an image file (PIL cannot identify it)")
            except Exception as exc:
                return Finding(f"it is truncated or corrupt ({first_line(exc)})")
            ends_ok = True
            if fmt in REPAIRABLE_FORMATS:
                f.seek(-2, os.SEEK_END)
                ends_ok = f.read(2) == _JPEG_END
    except OSError as exc:  # permissions, I/O errors of the storage
        return Finding(f"it cannot be read ({first_line(exc)})")
    size_ok = size is None or (height, width) == tuple(size)
    if decode or not ends_ok:
        error = _decode_error(path)
        if error is not None:
            what = "it is truncated (no JPEG end marker)" if not ends_ok else "it cannot be decoded"
            # a repaired picture of the wrong size would still not match its boxes
            return Finding(f"{what}: {error}", repairable=size_ok and fmt in REPAIRABLE_FORMATS and _repairs(path))
    if not size_ok:
        return Finding(f"it is {width}x{height} pixels but the annotations say {size[1]}x{size[0]} (width x "
                       "height); its boxes may belong to another version of the picture")
    return None


def _annotated_size(dataset: Any, index: int) -> tuple[int, int] | None:
    info_of = getattr(dataset, "get_image_info", None)
    info = info_of(index) if info_of is not None else None
    if not info or info.get("height") is None or info.get("width") is None:
        return None
    return int(info["height"]), int(info["width"])


def scan_images(dataset: Any, workers: int | None = None, decode: bool = False,
                indices: Sequence[int] | None = None) -> list[BadImage]:
    """Check the image file of every sample of `dataset` (which has `image_path(i)`, and `get_image_info(i)` for the
    size check); returns the bad ones in index order, each marked repairable or not. `indices` limits the scan to those samples."""
    if not hasattr(dataset, "image_path"):
        raise TypeError(f"{type(dataset).__name__} has no image_path(index): it cannot be scanned")
    todo = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    jobs = [(i, Path(dataset.image_path(i)), _annotated_size(dataset, i)) for i in todo]
    with ThreadPoolExecutor(max_workers=max(1, workers or default_workers())) as pool:
        findings = list(pool.map(lambda job: check_image(job[1], job[2], decode), jobs))
    return [BadImage(i, path, *finding) for (i, path, _), finding in zip(jobs, findings) if finding is not None]
