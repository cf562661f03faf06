"""The class list of a run comes from its data: `dataset.num_classes` is only a check.

A user's own folder says what its classes are (a VOC `classes.txt`, a data.yaml's `names`, a COCO file's
categories, the Cityscapes label set); asking them to repeat the count on the command line only adds a way to get
it wrong. When they do give it, a disagreement stops the run before any training, naming both numbers and the
file the classes were read from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.config.validation import ConfigError

__all__ = ["check_num_classes", "classes_source"]


def classes_source(dataset: Any) -> str:
    """Where `dataset.classes` were read from, for messages: the dataset's own `classes_source` when it has one,
    else what its loader reads them from."""
    while hasattr(dataset, "dataset"):
        dataset = dataset.dataset  # wrappers (SkipImages, PipelineDataset) hold the loader's dataset
    source = getattr(dataset, "classes_source", None)
    if source:
        return str(source)
    if getattr(dataset, "ann_file", None):  # COCO layout: the categories of the annotation file
        return f"the categories of {dataset.ann_file}"
    years = getattr(dataset, "years", None)
    if years is not None:  # VOC layout: classes.txt in the year folders, else the 20 VOC classes
        files = [Path(dataset.root) / f"VOC{y}" / "classes.txt" for y in years]
        present = [str(f) for f in files if f.is_file()]
        return ", ".join(present) if present else f"the 20 Pascal VOC classes (no classes.txt in {files[0].parent})"
    if type(dataset).__name__ == "CityscapesDetection":
        return "the Cityscapes label set (its 8 instance classes)"
    return f"the dataset at {getattr(dataset, 'root', '?')}"


def _names(classes: list[str]) -> str:
    return ", ".join(classes[:10]) + (", …" if len(classes) > 10 else "")


def check_num_classes(given: int | None, dataset: Any) -> int:
    """The number of classes to build the model with: the dataset's, after checking `given` (dataset.num_classes)
    against it when set."""
    found = int(dataset.num_classes)
    if given is not None and int(given) != found:
        raise ConfigError(
            f"dataset.num_classes={given}, but the data has {found} classes ({_names(list(dataset.classes))}), read "
            f"from {classes_source(dataset)}. Drop the override (dataset.num_classes=null takes the classes from the "
            f"data) or set dataset.num_classes={found}.")
    return found
