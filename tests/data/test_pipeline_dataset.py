"""The pipeline inside data-loader workers: seeded per worker, and told the epoch through the sampled indices."""
from __future__ import annotations

import os

import pytest
import torch
from torchvision.transforms import v2

from framework.data.datasets.shapes import ShapesDataset
from framework.data.loader import EpochIndex, build_dataloader
from framework.data.pipeline_dataset import PipelineDataset
from framework.data.transforms import (
    GaussianNoise, GridMask, HSVJitter, MixUp, Mosaic, Normalize, PCALighting, Pipeline, RandomAffine,
)


def full_pipeline(close_mosaic_epochs: int = 0, mosaic_prob: float = 1.0) -> Pipeline:
    """Every random transform we ship, in one pipeline."""
    return Pipeline([
        v2.Resize(size=None, max_size=64),
        Mosaic(64, prob=mosaic_prob),
        RandomAffine(degrees=5, translate=0.1, scale=(0.5, 1.5), shear=2, output_size=64),
        MixUp(prob=0.5),
        HSVJitter(), PCALighting(), GaussianNoise(prob=0.5), v2.RandomGrayscale(p=0.1),
        v2.RandomApply([v2.GaussianBlur(3)], p=0.2),
        v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(p=0.1),
        GridMask(d1=8, d2=24, prob=0.5),
        v2.SanitizeBoundingBoxes(),
        Normalize(),
    ], close_mosaic_epochs=close_mosaic_epochs)


def collect(loader, epochs: int = 1, max_epochs: int | None = None):
    batches = []
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch, max_epochs)
        batches += list(loader)
    return batches


def test_two_seeded_runs_with_two_workers_give_identical_batches(shapes_root):
    runs = []
    for seed in (0, 0, 1):
        ds = PipelineDataset(ShapesDataset(str(shapes_root), "train", generate=False), full_pipeline())
        runs.append(collect(build_dataloader(ds, batch_size=4, num_workers=2, shuffle=True, seed=seed), epochs=2))
    (a, b, c) = runs
    assert len(a) == len(b) == 12
    for x, y in zip(a, b):
        assert torch.equal(x.images, y.images)
        for tx, ty in zip(x.targets, y.targets):
            assert torch.equal(tx["boxes"], ty["boxes"]) and torch.equal(tx["labels"], ty["labels"])
            assert tx["source_ids"] == ty["source_ids"]
    assert not all(torch.equal(x.images, z.images) for x, z in zip(a, c))


def test_close_mosaic_switches_in_persistent_workers_without_restarting_them(shapes_root):
    ds = PipelineDataset(ShapesDataset(str(shapes_root), "train", generate=False),
                         full_pipeline(close_mosaic_epochs=1))
    loader = build_dataloader(ds, batch_size=4, num_workers=2, shuffle=True, seed=0)
    pids, mosaics = [], []
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch, max_epochs=3)
        counts = [len(t.get("source_ids", [t["image_id"]])) for batch in loader for t in batch.targets]
        mosaics.append(sum(n >= 4 for n in counts))
        pids.append(sorted(w.pid for w in loader._iterator._workers))
    assert mosaics[0] == mosaics[1] == 24 and mosaics[2] == 0  # prob 1.0 until the last epoch, then none
    assert pids[0] == pids[1] == pids[2] and os.getpid() not in pids[0]


def test_epoch_index_survives_pickling_and_acts_as_an_int():
    import pickle

    idx = pickle.loads(pickle.dumps(EpochIndex(5, epoch=3, max_epochs=10)))
    assert idx == 5 and idx.epoch == 3 and idx.max_epochs == 10 and [0, 1, 2, 3, 4, 5][idx] == 5


def test_wrapper_passes_metadata_and_refuses_double_transforms(shapes_root):
    raw = ShapesDataset(str(shapes_root), "train", generate=False)
    ds = PipelineDataset(raw, full_pipeline())
    assert ds.classes == raw.classes and ds.num_classes == 4 and len(ds) == len(raw)
    assert ds.get_image_info(0) == raw.get_image_info(0)
    with pytest.raises(ValueError, match="transforms=None"):
        PipelineDataset(ShapesDataset(str(shapes_root), "train", transforms=Normalize(), generate=False), None)


def test_samples_are_seeded_by_seed_epoch_and_index_and_leave_the_main_process_generators_alone(shapes_root):
    import random

    import numpy as np

    ds = PipelineDataset(ShapesDataset(str(shapes_root), split="train"), full_pipeline())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expected = (torch.rand(1), np.random.rand(), random.random())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    a = ds[EpochIndex(3, epoch=1, max_epochs=4, seed=5)]
    assert (torch.rand(1), np.random.rand(), random.random()) == expected  # untouched by the sample's draws
    b = ds[EpochIndex(3, epoch=1, max_epochs=4, seed=5)]
    c = ds[EpochIndex(3, epoch=2, max_epochs=4, seed=5)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])  # a function of (seed, epoch, index)
    assert not torch.equal(a[0], c[0])
