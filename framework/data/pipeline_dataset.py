"""A dataset whose samples go through a `Pipeline`, which may draw partner samples (Mosaic, MixUp).

The wrapped dataset yields raw samples (its own `transforms` left empty); this wrapper owns the pipeline so that
multi-image transforms can load partners from the same dataset, and reads the epoch stamped on each index by
`EpochBatchSampler` so close-mosaic and probability ramps take effect inside persistent workers. Each such sample
is augmented from its own seed (`sample_seed`), so the data of a run does not depend on the worker count and a
resumed run sees exactly what the uninterrupted one would have.

With `on_bad_image="skip"`, an image that cannot be loaded (the sample's own or a Mosaic/MixUp partner's) is
replaced by the next index's and its path travels with the sample to the batch (`Batch.skipped_images`); with
`"repair"`, a JPEG cut short is decoded as far as its data goes and its path travels the same way
(`Batch.repaired_images`); with `"error"`, or a file `repair` cannot repair, its `BadImageError` stops the run.
"""
from __future__ import annotations

import functools
import random
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from framework.data.bad_images import check_on_bad_image, load_repairing, load_substituting, mark_images
from framework.data.loader import REPAIRED_IMAGES, SKIPPED_IMAGES, EpochIndex, sample_seed
from framework.data.transforms.pipeline import Pipeline, Sample


class PipelineDataset(Dataset):
    """`dataset[i]` through `pipeline`; metadata (classes, coco, get_image_info…) is the wrapped dataset's."""

    def __init__(self, dataset: Dataset, pipeline: Pipeline | Callable | None, on_bad_image: str = "error") -> None:
        if getattr(dataset, "transforms", None):
            raise ValueError(f"{type(dataset).__name__} already has transforms; build it with transforms=None and "
                             "give the pipeline to PipelineDataset")
        self.dataset = dataset
        self.pipeline = pipeline
        self.on_bad_image = check_on_bad_image(on_bad_image)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        if not isinstance(index, EpochIndex):
            return self._load(int(index))
        with _seeded(sample_seed(index.seed, index.epoch, int(index))):
            if isinstance(self.pipeline, Pipeline):
                self.pipeline.set_epoch(index.epoch, index.max_epochs)
            return self._load(int(index))

    def _load(self, index: int) -> Sample:
        pipeline, load, skipped, repaired = self.pipeline, self.dataset.__getitem__, [], []
        if self.on_bad_image == "skip":
            load = functools.partial(load_substituting, load, length=len(self.dataset), skipped=skipped)
        elif self.on_bad_image == "repair":
            load = functools.partial(load_repairing, load, repaired=repaired)
        if isinstance(pipeline, Pipeline):
            sample = pipeline.sample(index, load, len(self.dataset))
        else:
            sample = load(index)
            sample = pipeline(*sample) if pipeline is not None else sample
        return mark_images(mark_images(sample, SKIPPED_IMAGES, skipped), REPAIRED_IMAGES, repaired)

    def __getattr__(self, name: str) -> Any:
        # only called for attributes not found here: classes, num_classes, coco, get_image_info, …
        if name == "dataset":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"PipelineDataset({self.dataset!r},\n{self.pipeline!r})"


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch, numpy and `random` for one sample. In the main process (num_workers=0) the generators are
    restored afterwards, so the model's own random draws (e.g. RPN sampling) do not depend on the data."""
    main = get_worker_info() is None
    saved = (torch.get_rng_state(), np.random.get_state(), random.getstate()) if main else None
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        if saved is not None:
            torch.set_rng_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])
