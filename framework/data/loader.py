"""Batching: collate samples into padded batches and build seeded data loaders.

The ``Batch`` is the contract between data and model: one padded float tensor (so the
backbone runs once per batch), the per-image targets as plain tensors, and each image's
size before padding (so heads never place anchors, points or detections in padding).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from torchvision import tv_tensors

__all__ = ["Batch", "EpochBatchSampler", "EpochIndex", "GroupedBatchSampler", "aspect_groups", "build_dataloader",
           "collate", "seed_worker"]


def _move_target(target: dict[str, Any], fn: Any) -> dict[str, Any]:
    return {k: fn(v) if isinstance(v, Tensor) else v for k, v in target.items()}


@dataclass
class Batch:
    """A padded batch of images with their targets.

    ``images`` is ``[B, 3, H, W]`` float with H and W multiples of the size divisor;
    ``image_sizes[i]`` is image i's ``(h, w)`` before padding.
    """

    images: Tensor
    targets: list[dict[str, Any]]
    image_sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.targets)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move images and every tensor in the targets (boxes, labels, …) to ``device``."""

        def move(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=non_blocking)

        return Batch(
            images=move(self.images),
            targets=[_move_target(t, move) for t in self.targets],
            image_sizes=list(self.image_sizes),
        )

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)``, which only pins types it knows or
        that define this method; without it a custom batch would silently stay pageable."""
        return Batch(
            images=self.images.pin_memory(),
            targets=[_move_target(t, lambda x: x.pin_memory()) for t in self.targets],
            image_sizes=list(self.image_sizes),
        )


def _plain(value: Any) -> Any:
    """Strip tv_tensor subclasses: past the pipeline, metadata such as canvas_size is
    stale (padding changes the canvas) and subclass dispatch only costs time."""
    if isinstance(value, tv_tensors.TVTensor):
        return value.as_subclass(Tensor)
    return value


def collate(
    samples: Sequence[tuple[Tensor, dict[str, Any]]],
    size_divisor: int = 32,
    pad_value: float = 0.0,
) -> Batch:
    """Pad images bottom/right to a common size that is a multiple of ``size_divisor``.

    Images must already be float and normalized (the pipeline ends with ToDtype +
    Normalize), so the default ``pad_value=0`` pads with the dataset mean. Padding only
    at the bottom/right keeps box coordinates valid without any shift.
    """
    if len(samples) == 0:
        raise ValueError("collate() got an empty list of samples")
    if size_divisor < 1:
        raise ValueError(f"size_divisor must be >= 1, got {size_divisor}")
    images = [img.as_subclass(Tensor) if isinstance(img, Tensor) else img for img, _ in samples]
    for img in images:
        if not isinstance(img, Tensor) or img.ndim != 3:
            raise TypeError(f"expected CHW image tensors, got {type(img).__name__}")
        if not img.is_floating_point():
            raise TypeError(
                f"collate() expects float, normalized images but got {img.dtype}: end the "
                "transforms pipeline with ToDtype(torch.float32, scale=True) + Normalize"
            )
    channels = images[0].shape[0]
    if any(img.shape[0] != channels for img in images):
        raise ValueError(f"images have different channel counts: {[i.shape[0] for i in images]}")

    image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    max_h = max(h for h, _ in image_sizes)
    max_w = max(w for _, w in image_sizes)
    pad_h = -(-max_h // size_divisor) * size_divisor
    pad_w = -(-max_w // size_divisor) * size_divisor
    dtype = images[0].dtype
    batch = images[0].new_full((len(images), channels, pad_h, pad_w), pad_value, dtype=dtype)
    for i, img in enumerate(images):
        batch[i, :, : img.shape[-2], : img.shape[-1]].copy_(img)

    targets: list[dict[str, Any]] = []
    for _, target in samples:
        t = {k: _plain(v) for k, v in target.items()}
        if "boxes" in t:
            t["boxes"] = torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4)
        if "labels" in t:
            t["labels"] = torch.as_tensor(t["labels"], dtype=torch.int64).reshape(-1)
        targets.append(t)
    return Batch(images=batch, targets=targets, image_sizes=image_sizes)


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in each worker from torch's per-worker seed.

    torch already gives every worker ``base_seed + worker_id`` (the base drawn from the
    loader's generator); without this, numpy-based augmentations would repeat the same
    random stream in every worker, or across epochs.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches whose images share an orientation (landscape or portrait).

    Padding a batch to its largest height *and* width makes a mixed batch of 4:3 and 3:4 images nearly square and
    wastes up to half the compute on padding; torchvision's references group the same way. The number of batches
    per epoch is fixed (``sum`` over groups), which the lr schedule and the ETA rely on.
    """

    def __init__(self, sampler: Sampler[int], group_ids: Sequence[int], batch_size: int, drop_last: bool) -> None:
        self.sampler, self.group_ids = sampler, list(group_ids)
        self.batch_size, self.drop_last = batch_size, drop_last

    def __iter__(self):
        buffers: dict[int, list[int]] = {}
        for idx in self.sampler:
            buf = buffers.setdefault(self.group_ids[idx], [])
            buf.append(idx)
            if len(buf) == self.batch_size:
                yield buf
                buffers[self.group_ids[idx]] = []
        if not self.drop_last:
            for buf in buffers.values():
                if buf:
                    yield buf

    def __len__(self) -> int:
        counts: dict[int, int] = {}
        for g in self.group_ids:
            counts[g] = counts.get(g, 0) + 1
        div = (lambda n: n // self.batch_size) if self.drop_last else (lambda n: -(-n // self.batch_size))
        return sum(div(n) for n in counts.values())


def aspect_groups(dataset: Dataset) -> list[int] | None:
    """0 for landscape/square images, 1 for portrait, from annotation metadata (no decoding); None if unknown."""
    info = getattr(dataset, "get_image_info", None)
    if info is None:
        return None
    return [int(rec["height"] > rec["width"]) for rec in (info(i) for i in range(len(dataset)))]


class EpochIndex(int):
    """A dataset index that also carries the epoch it was drawn for.

    With persistent workers the pipeline objects live on in each worker process, so an epoch set on the main
    process's copy never reaches them. The epoch travels with the indices instead (as in YOLOX): a dataset that
    cares (``PipelineDataset``) reads ``epoch``/``max_epochs``, every other dataset sees a plain ``int``.
    """

    epoch: int
    max_epochs: int | None

    def __new__(cls, index: int, epoch: int, max_epochs: int | None = None) -> EpochIndex:
        obj = super().__new__(cls, index)
        obj.epoch, obj.max_epochs = epoch, max_epochs
        return obj

    def __reduce__(self):  # indices are pickled to the workers; keep the epoch
        return EpochIndex, (int(self), self.epoch, self.max_epochs)

    def __repr__(self) -> str:
        return f"EpochIndex({int(self)}, epoch={self.epoch}, max_epochs={self.max_epochs})"


class EpochBatchSampler(Sampler[list[EpochIndex]]):
    """Wraps a batch sampler and stamps every index with the epoch set by ``set_epoch`` (see ``EpochIndex``).

    The batch sampler runs in the main process when a new epoch's iterator is created, so the switch costs
    nothing and the workers are not restarted (close-mosaic, GridMask ramps).
    """

    def __init__(self, batch_sampler: Sampler[list[int]]) -> None:
        self.batch_sampler = batch_sampler
        self.epoch, self.max_epochs = 0, None

    def set_epoch(self, epoch: int, max_epochs: int | None = None) -> None:
        self.epoch, self.max_epochs = epoch, max_epochs
        inner = getattr(getattr(self.batch_sampler, "sampler", None), "set_epoch", None)
        if inner is not None:  # e.g. DistributedSampler reshuffles per epoch
            inner(epoch)

    def __iter__(self):
        for batch in self.batch_sampler:
            yield [EpochIndex(i, self.epoch, self.max_epochs) for i in batch]

    def __len__(self) -> int:
        return len(self.batch_sampler)


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    size_divisor: int = 32,
    pin_memory: bool = False,
    group_by_aspect_ratio: bool = False,
) -> DataLoader:
    """A DataLoader whose order and worker randomness are reproducible from ``seed``.

    With ``group_by_aspect_ratio`` (and a dataset that knows its image sizes) batches hold only landscape or only
    portrait images; see ``GroupedBatchSampler``. ``loader.batch_sampler.set_epoch(epoch, max_epochs)`` tells the
    dataset's pipeline, in every worker, which epoch the coming batches belong to.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    groups = aspect_groups(dataset) if group_by_aspect_ratio else None
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    if groups is not None:
        batches: Sampler[list[int]] = GroupedBatchSampler(sampler, groups, batch_size, drop_last)
    else:
        batches = BatchSampler(sampler, batch_size, drop_last)
    return DataLoader(
        dataset,
        batch_sampler=EpochBatchSampler(batches),
        num_workers=num_workers,
        collate_fn=functools.partial(collate, size_divisor=size_divisor),
        pin_memory=pin_memory,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
