"""Boxes that cannot be trained on — zero or negative size, NaN/inf coordinates, outside the image — are clipped or
dropped once, when a dataset is built, counted per reason, and reported in one warning.

Why at construction: everything downstream (transforms, assigners, IoU losses) assumes finite, positive-area boxes
inside the image, and one NaN box is enough to turn a loss NaN hours into a run. Checking all boxes of a file at once
is a few vectorised numpy operations, and the warning can then say how many boxes were affected and which ones,
where a silent per-sample drop in a loader worker would say nothing.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np

__all__ = ["BOX_REASONS", "CLIPPED", "EMPTY", "NONFINITE", "OK", "OUTSIDE", "check_boxes", "count_boxes",
           "report_boxes"]

logger = logging.getLogger("framework")

OK, CLIPPED, EMPTY, NONFINITE, OUTSIDE = range(5)
#: `dataset.box_report` key of each code (OK is not counted).
BOX_REASONS: dict[int, str] = {CLIPPED: "clipped", EMPTY: "dropped_empty", NONFINITE: "dropped_nonfinite",
                               OUTSIDE: "dropped_outside"}
_WORDS = {EMPTY: "zero or negative size", NONFINITE: "NaN or infinite",
          OUTSIDE: "outside the image", CLIPPED: "clipped"}
_F32_MAX = float(np.finfo(np.float32).max)
_MAX_EXAMPLES = 4


def check_boxes(xyxy: np.ndarray, heights: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classify float64 XYXY boxes on images of the given per-box sizes: `(codes int8 (N,), clipped float32 (N, 4))`.

    Codes, first match wins: NONFINITE (NaN, ±inf, or beyond float32's range, where storing would make it inf),
    EMPTY (x1 <= x0 or y1 <= y0 as written, or after rounding to float32), OUTSIDE (positive size but no overlap with
    the image), CLIPPED (partly outside, cut to the image), OK. Rows of NONFINITE boxes in `clipped` are zeros.
    """
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    finite = (np.isfinite(xyxy) & (np.abs(xyxy) <= _F32_MAX)).all(axis=1)
    b = np.where(finite[:, None], xyxy, 0.0)
    f32 = b.astype(np.float32)  # rounding is monotonic: empty in float64 implies empty here
    empty = (f32[:, 2] <= f32[:, 0]) | (f32[:, 3] <= f32[:, 1])
    w = np.asarray(widths, dtype=np.float64).reshape(-1)
    h = np.asarray(heights, dtype=np.float64).reshape(-1)
    c = np.stack([np.clip(b[:, 0], 0, w), np.clip(b[:, 1], 0, h), np.clip(b[:, 2], 0, w), np.clip(b[:, 3], 0, h)],
                 axis=1)
    changed = (c != b).any(axis=1)
    clipped = c.astype(np.float32)
    gone = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    codes = np.full(len(b), OK, dtype=np.int8)
    codes[changed] = CLIPPED
    codes[gone] = OUTSIDE
    codes[empty] = EMPTY
    codes[~finite] = NONFINITE
    return codes, clipped


def count_boxes(codes: np.ndarray) -> dict[str, int]:
    """`{reason: count}` for every reason of BOX_REASONS (zeros included, so every dataset reports the same keys)."""
    counts = np.bincount(np.asarray(codes, dtype=np.int64), minlength=len(BOX_REASONS) + 1)
    return {name: int(counts[code]) for code, name in BOX_REASONS.items()}


def report_boxes(source: str, codes: np.ndarray, describe: Callable[[int], str], extra: str = "") -> dict[str, int]:
    """Count `codes` and log one warning for `source` (the annotation file or folder) if any box was affected.

    `describe(i)` names box `i` for the examples ("image 12 annotation 40"); one example per reason is given, the
    dropped ones first. `extra` is appended to the message (e.g. annotations of images that do not exist).
    """
    counts = count_boxes(codes)
    dropped = {code: counts[BOX_REASONS[code]] for code in (EMPTY, NONFINITE, OUTSIDE)}
    n_dropped, n_clipped = sum(dropped.values()), counts["clipped"]
    if not (n_dropped or n_clipped or extra):
        return counts
    pieces = []
    if n_dropped or n_clipped:
        parts = []
        if n_dropped:
            why = ", ".join(f"{n} {_WORDS[code]}" for code, n in dropped.items() if n)
            parts.append(f"{n_dropped} box{'es' if n_dropped != 1 else ''} dropped ({why})")
        if n_clipped:
            parts.append(f"{n_clipped} box{'es' if n_clipped != 1 else ''} clipped to the image")
        codes = np.asarray(codes)
        examples = [f"{describe(int(np.argmax(codes == code)))} ({_WORDS[code]})"
                    for code in (NONFINITE, EMPTY, OUTSIDE, CLIPPED) if (codes == code).any()][:_MAX_EXAMPLES]
        pieces.append(f"{' and '.join(parts)}, e.g. {', '.join(examples)}"
                      + ("; dropped boxes are left out of training" if n_dropped else ""))
    if extra:
        pieces.append(extra)
    logger.warning(f"{source}: " + "; ".join(pieces))
    return counts
