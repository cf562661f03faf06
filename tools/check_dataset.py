#!/usr/bin/env python
"""Check a dataset's image files before training on it:

    python tools/check_dataset.py dataset=coco dataset.root=/data/coco
    python tools/check_dataset.py dataset=voc0712 dataset.root=/data/VOCdevkit split=val decode=true

Every image of the train and val splits (`split=train|val|all`) is checked as the training run checks them
(dataset.scan_images): the file exists, is not empty, is an image the loader can decode, is complete (PNG CRCs,
JPEG end marker) and has the size its annotations give. `decode=true` also decodes every image fully (slower; finds
damage inside JPEG data). Prints per split the image count, each bad file with the reason, marked
"[repairable with dataset.on_bad_image=repair]" when it is a JPEG cut short that a run can still decode as far as
its data goes (found with or without decode=true: such a file lacks its end marker), and the dataset's counts of
degenerate boxes (clipped or dropped when it is read; they do not stop a run and do not change the exit status).
With masks (`+dataset.train.with_masks=true +dataset.val.with_masks=true`), bad mask annotations stop it with their
list, or, with dataset.on_bad_image=skip, are counted.
Exits with 1 when bad images were found, 0 when every file is usable.
Bad files can be fixed or removed, left out of training with dataset.on_bad_image=skip, or, the repairable ones,
trained on with dataset.on_bad_image=repair.
"""
from __future__ import annotations

import sys
import time
from typing import Any

from omegaconf import DictConfig

from framework.config.cli import hydra_cli
from framework.config.instantiation import instantiate
from framework.config.validation import ConfigError
from framework.data.scan import BadImage, scan_images

SPLITS = {"train": ("train",), "val": ("val",), "all": ("train", "val")}
REPAIRABLE = "  [repairable with dataset.on_bad_image=repair]"


def report(split: str, dataset: Any, bad: list[BadImage], seconds: float) -> str:
    """The lines printed for one split."""
    repairable = sum(b.repairable for b in bad)
    state = (f"{len(bad)} bad ({repairable} repairable)" if repairable else f"{len(bad)} bad") if bad else "all usable"
    lines = [f"{split}: {len(dataset)} images, {state} (checked in {seconds:.1f} s)"]
    lines += [f"  {b.path}: {b.reason}{REPAIRABLE if b.repairable else ''}" for b in bad]
    boxes = getattr(dataset, "box_report", None)  # {reason: count} of boxes clipped or dropped when it was read
    if boxes is not None:
        boxes = dict(boxes)
        masks = boxes.pop("dropped_bad_mask", 0)  # with masks, under dataset.on_bad_image=skip
        if masks:
            lines.append(f"  bad masks: {masks} instance(s) left out (dataset.on_bad_image=skip)")
        counts = ", ".join(f"{name}: {count}" for name, count in boxes.items() if count)
        lines.append(f"  degenerate boxes ({counts}), fixed or left out when the dataset is read" if counts
                     else "  boxes: all usable")
    return "\n".join(lines)


def repair_advice(bad: list[BadImage]) -> str:
    """What dataset.on_bad_image=repair would do with `bad` (empty when it would do nothing)."""
    repairable = sum(b.repairable for b in bad)
    if not repairable:
        return ""
    jpegs = "is a JPEG" if repairable == 1 else "are JPEGs"
    which = (f"{'It' if len(bad) == 1 else 'All of them'} {jpegs} cut short" if repairable == len(bad)
             else f"{repairable} of them {jpegs} cut short (the others would still stop a run)")
    return f"\n{which}: dataset.on_bad_image=repair trains on such files, decoded as far as their data goes."


@hydra_cli("check_dataset")
def main(cfg: DictConfig) -> None:
    if cfg.split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got split={cfg.split!r}.")
    if cfg.workers is not None and cfg.workers < 1:
        raise ConfigError(f"workers must be at least 1 (threads reading the files), got workers={cfg.workers}.")
    found: list[BadImage] = []
    for split in SPLITS[cfg.split]:
        dataset = instantiate(cfg.dataset[split])
        start = time.perf_counter()
        bad = scan_images(dataset, workers=cfg.workers, decode=cfg.decode)
        print(report(split, dataset, bad, time.perf_counter() - start), flush=True)
        found += bad
    if found:
        print(f"{len(found)} bad image file(s) in dataset '{cfg.dataset.name}' ({cfg.dataset.root}). Fix or remove "
              f"them, or train without them: dataset.on_bad_image=skip.{repair_advice(found)}")
        sys.exit(1)
    print(f"Every image file of dataset '{cfg.dataset.name}' ({cfg.dataset.root}) is usable.")


if __name__ == "__main__":
    main()
