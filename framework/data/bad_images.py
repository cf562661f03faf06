"""What happens to bad image files: `dataset.on_bad_image` = `error` (stop and list them) or `skip` (train without
them, counted at the end of every epoch).

Two moments find them. Before training, the scan (`framework.data.scan`) checks every file: `screen_dataset` then
raises a `DatasetError` naming them, or returns the dataset without them (`SkipImages`). While loading, a file that
passed the scan (or was never scanned, `dataset.scan_images=false`) can still fail to decode: `load_substituting`
then loads the next image instead and records the path, which travels with the sample to `Batch.skipped_images`.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from torch.utils.data import Dataset

from framework.data.errors import BadImageError, DatasetError
from framework.data.loader import SKIPPED_IMAGES
from framework.data.scan import BadImage, scan_images

__all__ = ["ON_BAD_IMAGE", "SkipImages", "bad_images_error", "check_on_bad_image", "load_substituting",
           "mark_skipped", "screen_dataset", "skipped_images_report"]

logger = logging.getLogger("framework")

ON_BAD_IMAGE: tuple[str, ...] = ("error", "skip")
MAX_LISTED = 10  # bad images named in an error message
MAX_SUBSTITUTES = 64  # consecutive unreadable images tried before giving up on a sample

Sample = tuple[Any, dict[str, Any]]


def check_on_bad_image(value: str) -> str:
    """`value` if it is a valid `dataset.on_bad_image`, else a DatasetError saying what is."""
    if value not in ON_BAD_IMAGE:
        raise DatasetError(f"dataset.on_bad_image={value!r} is not a choice: use dataset.on_bad_image=error (stop and "
                           "list the bad image files) or dataset.on_bad_image=skip (train without them).")
    return value


def _listing(bad: Sequence[BadImage]) -> str:
    lines = [f"  {b.path}: {b.reason}" for b in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        lines.append(f"  … and {len(bad) - MAX_LISTED} more")
    return "\n".join(lines)


def bad_images_error(bad: Sequence[BadImage], split: str, total: int) -> DatasetError:
    """The error that stops a run whose `split` has bad images: which, why, and the two ways on."""
    return DatasetError(
        f"{len(bad)} of the {total} {split} images cannot be used:\n{_listing(bad)}\n"
        f"Fix or remove these files (`python tools/check_dataset.py dataset=… split={split}` lists them all), or set "
        "dataset.on_bad_image=skip to train and evaluate without them.")


# ------------------------------------------------------------------------------------------------ before training
class SkipImages(Dataset):
    """`dataset` without the samples in `excluded` (a scan's result); its metadata stays reachable.

    Sample `i` is the wrapped dataset's `indices[i]`: every per-sample method (`image_path`, `get_image_info`,
    `get_annotation`, `image_id`) is remapped, `ids` lists the kept samples' ids, and `coco` holds only the kept
    images, so evaluation and plots neither expect nor count the ground truth of the images left out. Everything
    else (`classes`, `cat_id_to_label`, `box_report`…) is the wrapped dataset's. With `substitute=True` an image that
    fails at load time is replaced by the next one (see `load_substituting`), for datasets not read through a
    `PipelineDataset` (the validation set).
    """

    INDEXED = ("image_path", "get_image_info", "get_annotation", "image_id")

    def __init__(self, dataset: Any, excluded: Sequence[BadImage] = (), substitute: bool = False) -> None:
        drop = {b.index for b in excluded}
        self.dataset = dataset
        self.indices: list[int] = [i for i in range(len(dataset)) if i not in drop]
        self.excluded_images: list[BadImage] = list(excluded)
        self.substitute = substitute
        self._coco: Any = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        if not self.substitute:
            return self.dataset[self.indices[index]]
        skipped: list[str] = []
        sample = load_substituting(lambda i: self.dataset[self.indices[i]], int(index), len(self), skipped)
        if skipped:  # no end-of-epoch report covers the validation set: say it here (the evaluator then sees the
            # replacement twice and keeps it once)
            logger.warning(f"{', '.join(skipped)} could not be loaded: evaluating without "
                           f"{'them' if len(skipped) > 1 else 'it'} (dataset.on_bad_image=skip)")
        return mark_skipped(sample, skipped)

    @property
    def transforms(self) -> Any:  # read and set through (the runner decodes raw validation images without them)
        return getattr(self.dataset, "transforms", None)

    @transforms.setter
    def transforms(self, value: Any) -> None:
        self.dataset.transforms = value

    @property
    def ids(self) -> list[Any]:
        ids = self.dataset.ids
        return [ids[i] for i in self.indices]

    @property
    def coco(self) -> Any:
        """The wrapped dataset's pycocotools index restricted to the kept images (built once)."""
        full = self.dataset.coco
        if not self.excluded_images:
            return full
        if self._coco is None:
            from framework.data.datasets.coco import coco_index

            gone = {int(self.dataset.get_image_info(b.index)["id"]) for b in self.excluded_images}
            data = dict(full.dataset)
            data["images"] = [im for im in full.dataset["images"] if int(im["id"]) not in gone]
            data["annotations"] = [a for a in full.dataset.get("annotations", []) if int(a["image_id"]) not in gone]
            self._coco = coco_index(data)
        return self._coco

    def __getattr__(self, name: str) -> Any:
        # only called for attributes not found here
        if name in ("dataset", "indices"):  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        value = getattr(self.dataset, name)
        if name in self.INDEXED:
            return lambda index, *args, **kwargs: value(self.indices[index], *args, **kwargs)
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_coco": None}  # loader workers never need the index; rebuilt on demand

    def __repr__(self) -> str:
        return f"SkipImages({self.dataset!r}, {len(self.excluded_images)} bad images left out)"


def screen_dataset(dataset: Any, split: str, scan: bool = True, on_bad_image: str = "error",
                   substitute: bool = False, scanner: Callable[[Any], list[BadImage]] = scan_images) -> Any:
    """`dataset` checked (`scan`) and with `on_bad_image` applied: as it is when clean; a `DatasetError` listing the
    bad files (`error`); else a `SkipImages` without them, with a warning (`skip`). With `skip` and `substitute`,
    always wrapped, so that images failing at load time are replaced too. `scanner` runs the scan (under torchrun
    the runner scans on rank 0 only and shares the result)."""
    check_on_bad_image(on_bad_image)
    bad: list[BadImage] = []
    if scan:
        start = time.perf_counter()
        logger.info(f"Checking the {len(dataset)} {split} image files (dataset.scan_images=false to skip this)…")
        bad = list(scanner(dataset))
        found = f"{len(bad)} bad" if bad else "all usable"
        logger.info(f"Checked the {len(dataset)} {split} image files in {time.perf_counter() - start:.1f} s: {found}")
    if bad and on_bad_image == "error":
        raise bad_images_error(bad, split, len(dataset))
    if bad:
        logger.warning(f"Leaving out {len(bad)} of the {len(dataset)} {split} images (dataset.on_bad_image=skip):\n"
                       f"{_listing(bad)}")
    if bad or (substitute and on_bad_image == "skip"):
        return SkipImages(dataset, bad, substitute=substitute and on_bad_image == "skip")
    return dataset


# ------------------------------------------------------------------------------------------------ while loading
def load_substituting(load: Callable[[int], Sample], index: int, length: int, skipped: list[str]) -> Sample:
    """`load(index)`; if its image cannot be read, the next index that can (wrapping around), appending each
    unreadable file to `skipped`. The replacement depends only on the index, so runs stay reproducible."""
    tries = min(length, MAX_SUBSTITUTES + 1)
    for step in range(tries):
        try:
            return load((index + step) % length)
        except BadImageError as exc:
            skipped.append(str(exc.path))
    raise DatasetError(
        f"{tries} images in a row could not be loaded, from sample {index} on ({', '.join(skipped[:3])}, …): the "
        "dataset looks broken rather than a few bad files. Check dataset.root and run `python "
        "tools/check_dataset.py dataset=…`; dataset.scan_images=true leaves bad files out before training.")


def mark_skipped(sample: Sample, skipped: Sequence[str]) -> Sample:
    """`sample` carrying the paths it replaced (`SKIPPED_IMAGES` in its target, moved to the batch by `collate`)."""
    if not skipped:
        return sample
    image, target = sample
    return image, {**target, SKIPPED_IMAGES: [*target.get(SKIPPED_IMAGES, ()), *skipped]}


def skipped_images_report(epoch: int, loader: Any, gather: Callable[[list[str]], list[list[str]]] = lambda x: [x],
                          ) -> str | None:
    """The end-of-epoch line "Epoch N: K bad images skipped (…)", or None when none were. `loader` is the training
    loader (a `DetectionLoader` over a dataset that may wrap a `SkipImages`); `gather` collects every process's
    load-time paths (`framework.engine.distributed.gather_objects` under torchrun)."""
    pop = getattr(loader, "pop_skipped_images", None)
    at_load = sorted({p for paths in gather(pop() if pop is not None else []) for p in paths})
    by_scan = getattr(getattr(loader, "dataset", None), "excluded_images", None) or []
    total = len(at_load) + len(by_scan)
    if not total:
        return None
    listed = ", ".join(at_load[:5]) + (", …" if len(at_load) > 5 else "")
    parts = [f"{len(by_scan)} found by the scan"] if by_scan else []
    if at_load:
        parts.append(f"{len(at_load)} at load time: {listed}")
    return f"Epoch {epoch}: {total} bad image{'s' if total != 1 else ''} skipped ({', '.join(parts)})"
