"""Bad mask annotations, found while a dataset with masks is read: stop the build with one `DatasetError` that lists
them (file and annotation or image id each), or, under `dataset.on_bad_image=skip`, drop them and count them in
`box_report["dropped_bad_mask"]` with one warning, as bad boxes are counted (`box_report.py`).

Why at construction and not when a sample is decoded: a problem found mid-epoch would crash a loader worker hours
into a run. Every loader checks what it can when it is built (a polygon's points, an RLE's size, an instance PNG's
size and indices) and records each problem here; `finish` then applies the policy once for the whole file or folder.
"""
from __future__ import annotations

import logging

from framework.data.errors import DatasetError

__all__ = ["BAD_MASK_KEY", "MaskProblems", "check_mask_policy"]

logger = logging.getLogger("framework")

#: The `box_report` key counting the mask annotations dropped under `dataset.on_bad_image=skip` (present only on a
#: dataset built with `with_masks=True`).
BAD_MASK_KEY = "dropped_bad_mask"
MAX_LISTED = 10
_POLICIES = ("error", "skip", "repair")


def check_mask_policy(on_bad_image: str) -> str:
    """`on_bad_image` if it is one of `dataset.on_bad_image`'s values (for a dataset's constructor argument)."""
    if on_bad_image not in _POLICIES:
        raise ValueError(f"on_bad_image must be one of {_POLICIES}, got {on_bad_image!r}")
    return on_bad_image


class MaskProblems:
    """The bad mask annotations of one source (an annotation file or a dataset folder), in the order found.

    `add(message, dropped)`: `message` names the file and the annotation (or image) id and says what is wrong;
    `dropped` is how many instances leaving it out removes (0 for one already counted elsewhere, e.g. COCO's
    annotations of images not in 'images', counted as `dropped_no_image`)."""

    def __init__(self, source: str, on_bad_image: str = "error") -> None:
        self.source = source
        self.on_bad_image = check_mask_policy(on_bad_image)
        self.messages: list[str] = []
        self.dropped = 0

    def add(self, message: str, dropped: int = 1) -> None:
        self.messages.append(message)
        self.dropped += dropped

    def __bool__(self) -> bool:
        return bool(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def finish(self, report: dict[str, int]) -> dict[str, int]:
        """Raise the `DatasetError` listing the problems, unless `dataset.on_bad_image=skip`: then log one warning
        and return `report` with `dropped_bad_mask` set (the caller has left the annotations out)."""
        report[BAD_MASK_KEY] = self.dropped
        if not self.messages:
            return report
        n = len(self.messages)
        listing = "\n".join(f"  {m}" for m in self.messages[:MAX_LISTED])
        if n > MAX_LISTED:
            listing += f"\n  … and {n - MAX_LISTED} more"
        if self.on_bad_image != "skip":
            cannot = " (dataset.on_bad_image=repair cannot repair annotations)" if self.on_bad_image == "repair" else ""
            raise DatasetError(
                f"{n} bad mask annotation{'s' if n != 1 else ''} in {self.source}{cannot}:\n{listing}\nFix "
                f"{'it' if n == 1 else 'them'} (a polygon needs at least 3 points, an even number of coordinates; an "
                "RLE or instance PNG must have its image's size), or set dataset.on_bad_image=skip to train and "
                "evaluate without them (dropped and counted, like bad boxes).")
        logger.warning(f"{self.source}: {n} bad mask annotation{'s' if n != 1 else ''} left out "
                       f"(dataset.on_bad_image=skip; {self.dropped} instance{'s' if self.dropped != 1 else ''} "
                       f"dropped):\n{listing}")
        return report
