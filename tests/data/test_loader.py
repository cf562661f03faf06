"""Collate, Batch and the seeded DataLoader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from framework.data.datasets.shapes import ShapesDataset, generate_shapes
from framework.data.loader import Batch, GroupedBatchSampler, build_dataloader, collate


def _sample(h: int, w: int, n_boxes: int, image_id: int) -> tuple[tv_tensors.Image, dict]:
    image = tv_tensors.Image(torch.rand(3, h, w))
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[1.0, 2.0, 10.0, 12.0]] * n_boxes).reshape(-1, 4),
        format="XYXY",
        canvas_size=(h, w),
    )
    labels = torch.arange(n_boxes, dtype=torch.int32)  # int32 on purpose: collate makes int64
    return image, {"boxes": boxes, "labels": labels, "image_id": image_id, "orig_size": (h, w)}


def test_collate_pads_to_multiple_and_keeps_sizes() -> None:
    samples = [_sample(50, 70, 2, 1), _sample(33, 64, 0, 2)]
    batch = collate(samples, pad_value=-1.5)
    assert isinstance(batch, Batch) and len(batch) == 2
    assert tuple(batch.images.shape) == (2, 3, 64, 96)
    assert type(batch.images) is torch.Tensor and batch.images.dtype == torch.float32
    assert batch.image_sizes == [(50, 70), (33, 64)]
    for i, (img, _) in enumerate(samples):
        h, w = batch.image_sizes[i]
        assert torch.equal(batch.images[i, :, :h, :w], img.as_subclass(torch.Tensor))
        assert (batch.images[i, :, h:, :] == -1.5).all()
        assert (batch.images[i, :, :, w:] == -1.5).all()
    t0, t1 = batch.targets
    assert type(t0["boxes"]) is torch.Tensor and t0["boxes"].dtype == torch.float32
    assert t0["labels"].dtype == torch.int64 and t0["labels"].tolist() == [0, 1]
    assert tuple(t1["boxes"].shape) == (0, 4) and tuple(t1["labels"].shape) == (0,)
    assert t0["image_id"] == 1 and t1["orig_size"] == (33, 64)


def test_collate_other_divisor_and_exact_fit() -> None:
    batch = collate([_sample(64, 32, 1, 1)])
    assert tuple(batch.images.shape) == (1, 3, 64, 32)  # already aligned: no padding
    batch = collate([_sample(17, 9, 1, 1)], size_divisor=8)
    assert tuple(batch.images.shape) == (1, 3, 24, 16)


def test_collate_rejects_unnormalized_images() -> None:
    image, target = _sample(8, 8, 1, 1)
    with pytest.raises(TypeError, match="Normalize"):
        collate([(tv_tensors.Image((image * 255).to(torch.uint8)), target)])
    with pytest.raises(ValueError):
        collate([])


def test_batch_to_moves_tensors_only() -> None:
    batch = collate([_sample(40, 40, 3, 7)])
    moved = batch.to("meta")
    assert moved.images.device.type == "meta"
    assert moved.targets[0]["boxes"].device.type == "meta"
    assert moved.targets[0]["labels"].device.type == "meta"
    assert moved.targets[0]["image_id"] == 7 and moved.image_sizes == [(40, 40)]
    assert batch.images.device.type == "cpu"  # the original is untouched


class _Numbered(Dataset):
    """Returns its index and a numpy random draw, to observe order and worker seeding."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        image, target = _sample(20 + i, 30, 1, i)
        target["draw"] = float(np.random.rand())
        return image, target


def _run(loader) -> tuple[list[int], list[float]]:
    ids, draws = [], []
    for batch in loader:
        ids += [t["image_id"] for t in batch.targets]
        draws += [t["draw"] for t in batch.targets]
    return ids, draws


def test_build_dataloader_is_seeded() -> None:
    ds = _Numbered()
    a, _ = _run(build_dataloader(ds, batch_size=4, shuffle=True, seed=3))
    b, _ = _run(build_dataloader(ds, batch_size=4, shuffle=True, seed=3))
    c, _ = _run(build_dataloader(ds, batch_size=4, shuffle=True, seed=4))
    assert a == b and sorted(a) == list(range(24))
    assert a != c
    assert _run(build_dataloader(ds, batch_size=5, drop_last=True))[0] == list(range(20))


def test_build_dataloader_workers_are_seeded() -> None:
    ds = _Numbered()
    a_ids, a_draws = _run(build_dataloader(ds, batch_size=4, num_workers=2, shuffle=True, seed=1))
    b_ids, b_draws = _run(build_dataloader(ds, batch_size=4, num_workers=2, shuffle=True, seed=1))
    assert a_ids == b_ids and a_draws == b_draws
    assert len(set(a_draws)) == len(a_draws)  # workers do not share one numpy stream


def test_shapes_end_to_end(tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "shapes", num_train=6, num_val=2)
    pipeline = v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    ds = ShapesDataset(str(root), "train", transforms=pipeline, generate=False)
    batch = next(iter(build_dataloader(ds, batch_size=3, shuffle=True)))
    assert batch.images.shape[0] == 3 and batch.images.shape[2] % 32 == 0 and batch.images.shape[3] % 32 == 0
    for (h, w), t in zip(batch.image_sizes, batch.targets):
        assert t["boxes"].shape[0] == t["labels"].shape[0] >= 1
        assert (t["boxes"][:, 2] <= w).all() and (t["boxes"][:, 3] <= h).all()


class _Counting(_Numbered):
    def __init__(self) -> None:
        self.loaded: list[int] = []

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        self.loaded.append(int(i))
        return super().__getitem__(i)


def test_order_is_a_function_of_seed_and_epoch_and_resume_skips_without_loading() -> None:
    ds = _Counting()
    loader = build_dataloader(ds, batch_size=4, shuffle=True, seed=7)
    epochs = []
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        epochs.append(_run(loader)[0])
    assert epochs[0] != epochs[1] and sorted(epochs[0]) == list(range(24))
    # a fresh loader (a resumed run) reproduces epoch 1, and starting at its batch 4 loads only the last 2 batches
    fresh = build_dataloader(ds, batch_size=4, shuffle=True, seed=7)
    ds.loaded.clear()
    fresh.batch_sampler.set_epoch(1, start_batch=4)
    assert len(fresh) == 2
    assert _run(fresh)[0] == epochs[1][16:]
    assert ds.loaded == epochs[1][16:]


def test_ranks_read_disjoint_shards_with_equal_batch_counts() -> None:
    ds = _Numbered()
    shards = []
    for rank in range(3):
        loader = build_dataloader(ds, batch_size=2, shuffle=True, seed=1, drop_last=True, rank=rank, world_size=3)
        loader.batch_sampler.set_epoch(0)
        shards.append(_run(loader)[0])
    assert [len(s) for s in shards] == [8, 8, 8]
    assert sorted(sum(shards, [])) == list(range(24))


def test_grouped_batches_have_a_fixed_count_per_epoch() -> None:
    groups = [0] * 13 + [1] * 11  # 6 + 5 full batches of 2, and one left over in each group
    sampler = GroupedBatchSampler(list(range(24)), groups, batch_size=2, drop_last=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 12  # the two leftovers form a mixed batch
    assert sorted(i for b in batches for i in b) == list(range(24))
    assert sum(len({groups[i] for i in b}) > 1 for b in batches) == 1
