"""A dataset whose samples go through a `Pipeline`, which may draw partner samples (Mosaic, MixUp).

The wrapped dataset yields raw samples (its own `transforms` left empty); this wrapper owns the pipeline so that
multi-image transforms can load partners from the same dataset, and reads the epoch stamped on each index by
`EpochBatchSampler` so close-mosaic and probability ramps take effect inside persistent workers.
"""
from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from framework.data.loader import EpochIndex
from framework.data.transforms.pipeline import Pipeline, Sample


class PipelineDataset(Dataset):
    """`dataset[i]` through `pipeline`; metadata (classes, coco, get_image_info…) is the wrapped dataset's."""

    def __init__(self, dataset: Dataset, pipeline: Pipeline | Callable | None) -> None:
        if getattr(dataset, "transforms", None):
            raise ValueError(f"{type(dataset).__name__} already has transforms; build it with transforms=None and "
                             "give the pipeline to PipelineDataset")
        self.dataset = dataset
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        pipeline = self.pipeline
        if isinstance(pipeline, Pipeline):
            if isinstance(index, EpochIndex):
                pipeline.set_epoch(index.epoch, index.max_epochs)
            return pipeline.sample(int(index), self.dataset.__getitem__, len(self.dataset))
        sample = self.dataset[int(index)]
        return pipeline(*sample) if pipeline is not None else sample

    def __getattr__(self, name: str) -> Any:
        # only called for attributes not found here: classes, num_classes, coco, get_image_info, …
        if name == "dataset":  # not yet set (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"PipelineDataset({self.dataset!r},\n{self.pipeline!r})"
