"""What happens to bad image files: `dataset.on_bad_image` = `error` (stop and list them), `skip` (train without
them, counted at the end of every epoch) or `repair` (decode a JPEG cut short as far as its data goes and train on
it, counted the same way; stop, as under `error`, on files that cannot be repaired).

Two moments find them. Before training, the scan (`framework.data.scan`) checks every file and tells repairable
ones apart: `screen_dataset` then raises a `DatasetError` naming the files the policy cannot use, or returns the
dataset without them (`SkipImages`) or with its repairable files listed (`RepairImages`). While loading, a file that
passed the scan (or was never scanned, `dataset.scan_images=false`) can still fail to decode: `load_substituting`
then loads the next image instead, or `load_repairing` lets the dataset's decode repair it (`repair_or_raise`), and
the path travels with the sample to `Batch.skipped_images` / `Batch.repaired_images`.
"""
from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from framework.data.errors import BadImageError, DatasetError
from framework.data.loader import REPAIRED_IMAGES, SKIPPED_IMAGES
from framework.data.scan import BadImage, decode_truncated, first_line, scan_images

__all__ = ["ON_BAD_IMAGE", "RepairImages", "ScreenedDataset", "SkipImages", "bad_images_error", "check_on_bad_image",
           "load_repairing", "load_substituting", "mark_images", "repair_or_raise", "screen_dataset",
           "skipped_images_report"]

logger = logging.getLogger("framework")

ON_BAD_IMAGE: tuple[str, ...] = ("error", "skip", "repair")
MAX_LISTED = 10  # bad images named in an error message
MAX_SUBSTITUTES = 64  # consecutive unreadable images tried before giving up on a sample

Sample = tuple[Any, dict[str, Any]]

# The files repaired in the current `load_repairing` call, None outside one. A context variable, so the policy
# reaches the decode of any dataset (`decode_rgb`) without a parameter, and stays private to the thread (the scan's
# pool, other loaders) and the process (each loader worker sets it for the samples it loads).
_REPAIRED: ContextVar[list[str] | None] = ContextVar("framework_repaired_images", default=None)


def check_on_bad_image(value: str) -> str:
    """`value` if it is a valid `dataset.on_bad_image`, else a DatasetError saying what is."""
    if value not in ON_BAD_IMAGE:
        raise DatasetError(f"dataset.on_bad_image={value!r} is not a choice: use dataset.on_bad_image=error (stop and "
                           "list the bad image files), dataset.on_bad_image=skip (train without them) or "
                           "dataset.on_bad_image=repair (train on what JPEGs cut short still hold).")
    return value


def _listing(bad: Sequence[BadImage], mark_repairable: bool = False) -> str:
    lines = [f"  {b.path}: {b.reason}{' [repairable]' if mark_repairable and b.repairable else ''}"
             for b in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        lines.append(f"  … and {len(bad) - MAX_LISTED} more")
    return "\n".join(lines)


def bad_images_error(bad: Sequence[BadImage], split: str, total: int, on_bad_image: str = "error") -> DatasetError:
    """The error that stops a run whose `split` has images `on_bad_image` cannot use: which, why, and the ways on."""
    check = f"`python tools/check_dataset.py dataset=… split={split}` lists them all"
    if on_bad_image == "repair":
        return DatasetError(
            f"{len(bad)} of the {total} {split} images cannot be used, and dataset.on_bad_image=repair cannot "
            f"repair them:\n{_listing(bad)}\nFix or remove these files ({check}), or set dataset.on_bad_image=skip, "
            "which drops them (and the repairable ones) from training and evaluation.")
    repairable = sum(b.repairable for b in bad)
    advice = (f"\n{repairable} of them ([repairable]) {'is a JPEG' if repairable == 1 else 'are JPEGs'} cut short: "
              "dataset.on_bad_image=repair decodes such files as far as their data goes and trains on them."
              if repairable else "")
    return DatasetError(
        f"{len(bad)} of the {total} {split} images cannot be used:\n{_listing(bad, mark_repairable=True)}\n"
        f"Fix or remove these files ({check}), or set dataset.on_bad_image=skip to train and evaluate without "
        f"them.{advice}")


# ------------------------------------------------------------------------------------------------ before training
class ScreenedDataset(Dataset):
    """Base of the datasets `screen_dataset` returns: everything not defined here is the wrapped dataset's
    (`classes`, `coco`, `get_image_info`…), and `transforms` is read and set through (the trainer decodes raw
    validation images by setting it to None)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def transforms(self) -> Any:
        return getattr(self.dataset, "transforms", None)

    @transforms.setter
    def transforms(self, value: Any) -> None:
        self.dataset.transforms = value

    def __getattr__(self, name: str) -> Any:
        # only called for attributes not found here
        if name == "dataset":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


class SkipImages(ScreenedDataset):
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
        super().__init__(dataset)
        drop = {b.index for b in excluded}
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
        return mark_images(sample, SKIPPED_IMAGES, skipped)

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
        if name == "indices":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        value = super().__getattr__(name)
        if name in self.INDEXED:
            return lambda index, *args, **kwargs: value(self.indices[index], *args, **kwargs)
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_coco": None}  # loader workers never need the index; rebuilt on demand

    def __repr__(self) -> str:
        return f"SkipImages({self.dataset!r}, {len(self.excluded_images)} bad images left out)"


class RepairImages(ScreenedDataset):
    """`dataset` under `dataset.on_bad_image=repair`: every sample kept, `repaired_images` the files the scan found
    repairable (the end-of-epoch report counts them). With `at_load=True`, each sample is loaded under
    `load_repairing`, for datasets not read through a `PipelineDataset` (the validation set); a repair the scan did
    not foresee is logged, since no end-of-epoch report covers that set."""

    def __init__(self, dataset: Any, repaired: Sequence[BadImage] = (), at_load: bool = False) -> None:
        super().__init__(dataset)
        self.repaired_images: list[BadImage] = list(repaired)
        self.at_load = at_load

    def __getitem__(self, index: int) -> Sample:
        if not self.at_load:
            return self.dataset[index]
        repaired: list[str] = []
        sample = load_repairing(self.dataset.__getitem__, index, repaired)
        unforeseen = sorted(set(repaired) - {str(b.path) for b in self.repaired_images})
        if unforeseen:
            logger.warning(f"{', '.join(unforeseen)} could not be decoded: evaluating on what "
                           f"{'they hold' if len(unforeseen) > 1 else 'it holds'} (dataset.on_bad_image=repair)")
        return mark_images(sample, REPAIRED_IMAGES, repaired)

    def __repr__(self) -> str:
        return f"RepairImages({self.dataset!r}, {len(self.repaired_images)} truncated images repaired)"


def _scan(dataset: Any, split: str, scanner: Callable[[Any], list[BadImage]]) -> list[BadImage]:
    """`scanner(dataset)`, logged with its duration and what it found. A dataset whose images are not files (no
    `image_path(index)`, e.g. one generated in memory) has nothing to scan."""
    if not hasattr(dataset, "image_path"):
        logger.info(f"The {split} set ({type(dataset).__name__}) has no image_path(index): no image files to check.")
        return []
    start = time.perf_counter()
    logger.info(f"Checking the {len(dataset)} {split} image files (dataset.scan_images=false to skip this)…")
    bad = list(scanner(dataset))
    repairable = sum(b.repairable for b in bad)
    found = f"{len(bad)} bad ({repairable} repairable)" if repairable else f"{len(bad)} bad" if bad else "all usable"
    logger.info(f"Checked the {len(dataset)} {split} image files in {time.perf_counter() - start:.1f} s: {found}")
    return bad


def screen_dataset(dataset: Any, split: str, scan: bool = True, on_bad_image: str = "error",
                   substitute: bool = False, scanner: Callable[[Any], list[BadImage]] = scan_images) -> Any:
    """`dataset` checked (`scan`) and with `on_bad_image` applied: as it is when clean; a `DatasetError` listing the
    bad files (`error`, or `repair` for those it cannot repair); else a `SkipImages` without them (`skip`) or a
    `RepairImages` listing the repaired ones (`repair`), with a warning. With `substitute`, always wrapped, so that
    images failing at load time are replaced or repaired too. `scanner` runs the scan (under torchrun the trainer
    scans on rank 0 only and shares the result)."""
    check_on_bad_image(on_bad_image)
    bad = _scan(dataset, split, scanner) if scan else []
    repair = on_bad_image == "repair"
    unusable = [b for b in bad if not (repair and b.repairable)]
    if unusable and on_bad_image != "skip":
        raise bad_images_error(unusable, split, len(dataset), on_bad_image)
    if on_bad_image == "error":
        return dataset
    if repair:
        if bad:
            logger.warning(f"{len(bad)} {split} image{'s' if len(bad) > 1 else ''} repaired (dataset.on_bad_image="
                           f"repair), decoded as far as the data goes:\n{_listing(bad)}")
        return RepairImages(dataset, bad, at_load=substitute) if bad or substitute else dataset
    if bad:
        logger.warning(f"Leaving out {len(bad)} of the {len(dataset)} {split} images (dataset.on_bad_image=skip):\n"
                       f"{_listing(bad)}")
    if bad or substitute:
        return SkipImages(dataset, bad, substitute=substitute)
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


def load_repairing(load: Callable[[int], Sample], index: int, repaired: list[str]) -> Sample:
    """`load(index)` under `dataset.on_bad_image=repair`: an image its dataset decodes through `decode_rgb` that the
    fast decoder rejects is repaired (`repair_or_raise`) and its path appended to `repaired`."""
    token = _REPAIRED.set(repaired)
    try:
        return load(index)
    finally:
        _REPAIRED.reset(token)


def repair_or_raise(path: Path, error: BadImageError) -> torch.Tensor:
    """The fallback of a decode that failed on `path` with `error`: inside `load_repairing`, the picture decoded as
    far as its data goes (uint8 RGB CHW, recorded as repaired); otherwise `error`, and a `BadImageError` saying so
    when the file cannot be repaired. Only failed decodes get here, so sound images keep the fast decoder."""
    repaired = _REPAIRED.get()
    if repaired is None:
        raise error
    try:
        image = decode_truncated(path)
    except Exception as exc:  # whatever stops the repair, the file is unusable
        raise BadImageError(path, f"{error.reason}; dataset.on_bad_image=repair cannot repair it "
                                  f"({first_line(exc)})") from exc
    repaired.append(str(path))
    return pil_to_tensor(image)


def mark_images(sample: Sample, key: str, paths: Sequence[str]) -> Sample:
    """`sample` carrying `paths` under `key` (`SKIPPED_IMAGES`: the files it replaced; `REPAIRED_IMAGES`: the files
    repaired for it) in its target; `collate` moves them to the batch."""
    if not paths:
        return sample
    image, target = sample
    return image, {**target, key: [*target.get(key, ()), *paths]}


def _epoch_line(epoch: int, done: str, by_scan: Sequence[BadImage], at_load: set[str]) -> str | None:
    """ "Epoch N: K bad images <done> (J found by the scan, L at load time: …)", or None when there are none."""
    new = sorted(at_load - {str(b.path) for b in by_scan})  # a repaired file is also repaired at load time
    total = len(by_scan) + len(new)
    if not total:
        return None
    parts = [f"{len(by_scan)} found by the scan"] if by_scan else []
    if new:
        parts.append(f"{len(new)} at load time: {', '.join(new[:5])}{', …' if len(new) > 5 else ''}")
    return f"Epoch {epoch}: {total} bad image{'s' if total != 1 else ''} {done} ({', '.join(parts)})"


def skipped_images_report(epoch: int, loader: Any, gather: Callable[[Any], list[Any]] = lambda x: [x],
                          ) -> str | None:
    """The end-of-epoch line "Epoch N: K bad images skipped (…)" (or "repaired"), or None when there were none.
    `loader` is the training loader (a `DetectionLoader` over a dataset that may wrap a `SkipImages` or a
    `RepairImages`); `gather` collects every process's (skipped, repaired) load-time paths
    (`framework.engine.distributed.gather_objects` under torchrun)."""
    def popped(name: str) -> list[str]:
        pop = getattr(loader, name, None)
        return pop() if pop is not None else []

    per_rank = gather((popped("pop_skipped_images"), popped("pop_repaired_images")))
    dataset = getattr(loader, "dataset", None)
    lines = [
        _epoch_line(epoch, "skipped", getattr(dataset, "excluded_images", None) or [],
                    {path for skipped, _ in per_rank for path in skipped}),
        _epoch_line(epoch, "repaired", getattr(dataset, "repaired_images", None) or [],
                    {path for _, repaired in per_rank for path in repaired}),
    ]
    return "\n".join(line for line in lines if line) or None
