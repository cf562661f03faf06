"""Batching: collate samples into padded batches and build seeded data loaders.

The ``Batch`` is the contract between data and model: one padded float tensor (so the
backbone runs once per batch), the per-image targets as plain tensors, and each image's
size before padding (so heads never place anchors, points or detections in padding).
"""

from __future__ import annotations

import atexit
import functools
import random
import signal
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler
from torchvision import tv_tensors

__all__ = ["Batch", "DetectionLoader", "EpochBatchSampler", "EpochIndex", "GroupedBatchSampler", "REPAIRED_IMAGES",
           "SKIPPED_IMAGES", "aspect_groups", "build_dataloader", "collate", "sample_seed", "seed_worker"]

#: Target key under which a sample lists the image files replaced by it because they could not be loaded
#: (``dataset.on_bad_image=skip``); ``collate`` moves the paths to ``Batch.skipped_images``.
SKIPPED_IMAGES = "skipped_images"
#: …and the truncated image files decoded as far as their data goes for it (``dataset.on_bad_image=repair``), moved
#: to ``Batch.repaired_images``.
REPAIRED_IMAGES = "repaired_images"


def _move_target(target: dict[str, Any], fn: Any) -> dict[str, Any]:
    return {k: fn(v) if isinstance(v, Tensor) else v for k, v in target.items()}


@dataclass
class Batch:
    """A padded batch of images with their targets.

    ``images`` is ``[B, 3, H, W]`` float with H and W multiples of the size divisor;
    ``image_sizes[i]`` is image i's ``(h, w)`` before padding. ``skipped_images`` names the image files that
    could not be loaded and were replaced by others in this batch (``dataset.on_bad_image=skip``),
    ``repaired_images`` those decoded as far as their data went (``dataset.on_bad_image=repair``).
    """

    images: Tensor
    targets: list[dict[str, Any]]
    image_sizes: list[tuple[int, int]]
    skipped_images: list[str] = field(default_factory=list)
    repaired_images: list[str] = field(default_factory=list)

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
            skipped_images=list(self.skipped_images),
            repaired_images=list(self.repaired_images),
        )

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)``, which only pins types it knows or
        that define this method; without it a custom batch would silently stay pageable."""
        return Batch(
            images=self.images.pin_memory(),
            targets=[_move_target(t, lambda x: x.pin_memory()) for t in self.targets],
            image_sizes=list(self.image_sizes),
            skipped_images=list(self.skipped_images),
            repaired_images=list(self.repaired_images),
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
    skipped: list[str] = []
    repaired: list[str] = []
    for _, target in samples:
        skipped += target.get(SKIPPED_IMAGES, ())
        repaired += target.get(REPAIRED_IMAGES, ())
        t = {k: _plain(v) for k, v in target.items() if k not in (SKIPPED_IMAGES, REPAIRED_IMAGES)}
        if "boxes" in t:
            t["boxes"] = torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4)
        if "labels" in t:
            t["labels"] = torch.as_tensor(t["labels"], dtype=torch.int64).reshape(-1)
        targets.append(t)
    return Batch(images=batch, targets=targets, image_sizes=image_sizes, skipped_images=skipped,
                 repaired_images=repaired)


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in each worker from torch's per-worker seed.

    torch already gives every worker ``base_seed + worker_id`` (the base drawn from the
    loader's generator); without this, numpy-based augmentations would repeat the same
    random stream in every worker, or across epochs.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    # Ctrl-C in a terminal (SIGINT to the whole process group) and a scheduler's SIGTERM must reach only the main
    # process, which finishes its step, saves and shuts the workers down; a worker dying first would instead
    # make the main process fail with "DataLoader worker exited unexpectedly".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches whose images share an orientation (landscape or portrait).

    Padding a batch to its largest height *and* width makes a mixed batch of 4:3 and 3:4 images nearly square and
    wastes up to half the compute on padding; torchvision's references group the same way. The number of batches
    per epoch depends only on how many indices the sampler yields (``n // batch_size``, or rounded up without
    ``drop_last``): the lr schedule and the ETA rely on it, and under torchrun every rank must run the same number
    of steps or the gradient all-reduce hangs. Leftovers of the groups are merged into mixed batches to reach it.
    """

    def __init__(self, sampler: Sampler[int], group_ids: Sequence[int], batch_size: int, drop_last: bool) -> None:
        self.sampler, self.group_ids = sampler, list(group_ids)
        self.batch_size, self.drop_last = batch_size, drop_last

    def __iter__(self):
        buffers: dict[int, list[int]] = {}
        yielded = 0
        for idx in self.sampler:
            buf = buffers.setdefault(self.group_ids[idx], [])
            buf.append(idx)
            if len(buf) == self.batch_size:
                yield buf
                yielded += 1
                buffers[self.group_ids[idx]] = []
        leftover = [i for buf in buffers.values() for i in buf]
        for start in range(0, len(leftover), self.batch_size):
            if yielded == len(self):
                return
            yield leftover[start:start + self.batch_size]
            yielded += 1

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def aspect_groups(dataset: Dataset) -> list[int] | None:
    """0 for landscape/square images, 1 for portrait, from annotation metadata (no decoding); None if unknown."""
    info = getattr(dataset, "get_image_info", None)
    if info is None:
        return None
    return [int(rec["height"] > rec["width"]) for rec in (info(i) for i in range(len(dataset)))]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The random seed of one sample's augmentation: a function of (run seed, epoch, index) only.

    Seeding per sample rather than per worker makes the augmented data independent of the number of workers, of
    how indices are spread over them and over ranks, and of where a run was stopped: a resumed run sees exactly the
    samples the uninterrupted run would have seen, without replaying the skipped ones.
    """
    return (((seed * 1_000_003) ^ epoch) * 1_000_000_007 + index) % (2**63 - 1)


class EpochIndex(int):
    """A dataset index that also carries the epoch it was drawn for and the run's seed.

    With persistent workers the pipeline objects live on in each worker process, so an epoch set on the main
    process's copy never reaches them. The epoch travels with the indices instead (as in YOLOX): a dataset that
    cares (``PipelineDataset``) reads ``epoch``/``max_epochs``/``seed``, every other dataset sees a plain ``int``.
    """

    epoch: int
    max_epochs: int | None
    seed: int

    def __new__(cls, index: int, epoch: int, max_epochs: int | None = None, seed: int = 0) -> EpochIndex:
        obj = super().__new__(cls, index)
        obj.epoch, obj.max_epochs, obj.seed = epoch, max_epochs, seed
        return obj

    def __reduce__(self):  # indices are pickled to the workers; keep the epoch
        return EpochIndex, (int(self), self.epoch, self.max_epochs, self.seed)

    def __repr__(self) -> str:
        return f"EpochIndex({int(self)}, epoch={self.epoch}, max_epochs={self.max_epochs}, seed={self.seed})"


class EpochBatchSampler(Sampler[list[EpochIndex]]):
    """Wraps a batch sampler and stamps every index with the epoch set by ``set_epoch`` (see ``EpochIndex``).

    The batch sampler runs in the main process when a new epoch's iterator is created, so the switch costs
    nothing and the workers are not restarted (close-mosaic, GridMask ramps). ``set_epoch(…, start_batch=k)``
    resumes an epoch after its first k batches: their indices are drawn (the order is a function of the epoch)
    but never loaded.
    """

    def __init__(self, batch_sampler: Sampler[list[int]], seed: int = 0) -> None:
        self.batch_sampler, self.seed = batch_sampler, seed
        self.epoch, self.max_epochs, self.start_batch = 0, None, 0

    @property
    def sampler(self) -> Sampler[int] | None:
        return getattr(self.batch_sampler, "sampler", None)

    def set_epoch(self, epoch: int, max_epochs: int | None = None, start_batch: int = 0) -> None:
        if not 0 <= start_batch <= len(self.batch_sampler):
            raise ValueError(f"start_batch={start_batch} is outside the epoch's {len(self.batch_sampler)} batches")
        self.epoch, self.max_epochs, self.start_batch = epoch, max_epochs, start_batch
        inner = getattr(self.sampler, "set_epoch", None)
        if inner is not None:  # DistributedSampler reshuffles per epoch
            inner(epoch)

    def __iter__(self):
        for b, batch in enumerate(self.batch_sampler):
            if b >= self.start_batch:
                yield [EpochIndex(i, self.epoch, self.max_epochs, self.seed) for i in batch]

    def __len__(self) -> int:
        return len(self.batch_sampler) - self.start_batch


class DetectionLoader(DataLoader):
    """A DataLoader that remembers, in the main process, the image files its batches had to skip, and that never
    outlives the interpreter with its workers.

    Samples are loaded in worker processes, so a skipped file is known only to the batch that carries it
    (``Batch.skipped_images``); the training loop need not look: ``pop_skipped_images()`` gives the distinct paths
    seen since the last call (the trainer reports them at the end of each epoch); ``pop_repaired_images()`` the same
    for ``Batch.repaired_images``.

    Workers ignore SIGTERM (``seed_worker``), so the way multiprocessing ends daemon processes at exit (terminate,
    then join) would wait forever for persistent workers still alive then: they are whenever an exception ended
    training (its traceback keeps the iterator alive), and also when the garbage collector finalized the iterator
    (torch's shutdown then cannot reach the workers: their queues are finalized first). So the workers are shut down
    as soon as an error comes out of them, and at exit (see ``_stop_workers_at_exit``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._skipped: dict[str, None] = {}  # an ordered set
        self._repaired: dict[str, None] = {}
        _LOADERS.add(self)

    def __iter__(self) -> Iterator[Any]:
        iterator = super().__iter__()
        _WORKERS.update(getattr(iterator, "_workers", ()))
        try:
            for batch in iterator:
                self._skipped.update(dict.fromkeys(getattr(batch, "skipped_images", ())))
                self._repaired.update(dict.fromkeys(getattr(batch, "repaired_images", ())))
                yield batch
        except Exception:
            _shutdown(iterator)
            if iterator is getattr(self, "_iterator", None):
                self._iterator = None
            raise

    def pop_skipped_images(self) -> list[str]:
        skipped, self._skipped = list(self._skipped), {}
        return skipped

    def pop_repaired_images(self) -> list[str]:
        repaired, self._repaired = list(self._repaired), {}
        return repaired

    def shutdown_workers(self) -> None:
        """Stop the persistent worker processes now (the next iteration starts new ones)."""
        _shutdown(getattr(self, "_iterator", None))  # torch keeps the persistent workers' iterator here
        self._iterator = None


def _shutdown(iterator: Any) -> None:
    if hasattr(iterator, "_shutdown_workers"):  # a multi-process iterator
        iterator._shutdown_workers()


_LOADERS: weakref.WeakSet[DetectionLoader] = weakref.WeakSet()
_WORKERS: weakref.WeakSet[Any] = weakref.WeakSet()  # their worker processes


@atexit.register  # registered after multiprocessing's exit handler and torch's, so it runs before them
def _stop_workers_at_exit() -> None:
    """Shut down the workers of live loaders the regular way, then kill those of these loaders' workers that are
    left, which multiprocessing's SIGTERM could not end."""
    for loader in list(_LOADERS):
        loader.shutdown_workers()
    for process in list(_WORKERS):
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


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
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader whose order and augmentations are reproducible from ``seed`` and the epoch.

    ``batch_size`` is per process. Indices come from a ``DistributedSampler`` even in one process (``world_size=1``):
    its order is a function of ``(seed, epoch)``, so a resumed run needs no sampler state, and under torchrun each
    rank reads its own shard (padded by repetition to equal length; evaluation de-duplicates). With
    ``group_by_aspect_ratio`` (and a dataset that knows its image sizes) batches hold only landscape or only
    portrait images; see ``GroupedBatchSampler``. ``loader.batch_sampler.set_epoch(epoch, max_epochs)`` must be
    called at each epoch start; it also tells the dataset's pipeline, in every worker, which epoch it is.
    """
    generator = torch.Generator()  # draws the workers' base seed: different per rank (seed_worker)
    generator.manual_seed(seed + rank)
    groups = aspect_groups(dataset) if group_by_aspect_ratio else None
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
    if groups is not None:
        batches: Sampler[list[int]] = GroupedBatchSampler(sampler, groups, batch_size, drop_last)
    else:
        batches = BatchSampler(sampler, batch_size, drop_last)
    return DetectionLoader(
        dataset,
        batch_sampler=EpochBatchSampler(batches, seed),
        num_workers=num_workers,
        collate_fn=functools.partial(collate, size_divisor=size_divisor),
        pin_memory=pin_memory,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
