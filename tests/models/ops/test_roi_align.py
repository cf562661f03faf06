"""LevelRoIAlign equals torchvision's MultiScaleRoIAlign (levels, values, gradients), whether the CPU levels run
side by side on the thread pool or one after another."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from framework.models.ops.roi_align import LevelRoIAlign


def pyramid(seed: int = 0, size: tuple[int, int] = (512, 640)):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(2, 4, size[0] // s, size[1] // s, generator=g) for s in (4, 8, 16, 32)]
    boxes = []
    for n in (40, 25):
        xy = torch.rand(n, 2, generator=g) * torch.tensor([size[1], size[0]]) * 0.4
        wh = torch.rand(n, 2, generator=g).pow(2) * torch.tensor([size[1], size[0]]) + 8
        boxes.append(torch.cat([xy, xy + wh], 1))
    return feats, boxes, size


@pytest.mark.parametrize("threads", [1, 2])
def test_equals_torchvision_multiscale_roi_align(threads):
    feats, boxes, size = pyramid()
    reference = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    ours = LevelRoIAlign([4, 8, 16, 32], 7, 2)
    levels = ours.map_levels(torch.cat(boxes))
    assert len(levels.unique()) == 4  # the boxes really spread over the pyramid
    ref_feats = [f.clone().requires_grad_() for f in feats]
    our_feats = [f.clone().requires_grad_() for f in feats]
    expected = reference(OrderedDict((str(i), f) for i, f in enumerate(ref_feats)), boxes, [size, size])
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = ours(our_feats, boxes)
        assert torch.equal(got, expected)
        weights = torch.randn_like(expected)
        (expected * weights).sum().backward()
        (got * weights).sum().backward()
    finally:
        torch.set_num_threads(before)
    for r, o in zip(ref_feats, our_feats):
        torch.testing.assert_close(o.grad, r.grad, rtol=0, atol=1e-6)


def test_level_without_boxes_and_single_level():
    feats, boxes, _ = pyramid(seed=1)
    small = [b[:, :2].repeat(1, 2) + torch.tensor([0.0, 0.0, 4.0, 4.0]) for b in boxes]  # all on the finest level
    ours = LevelRoIAlign([4, 8, 16, 32])
    leaves = [f.clone().requires_grad_() for f in feats]
    ours(leaves, small).sum().backward()
    assert leaves[0].grad is not None and leaves[0].grad.abs().sum() > 0
    assert all(f.grad is None or not f.grad.any() for f in leaves[1:])
    one = LevelRoIAlign([8])
    assert one([feats[1]], boxes).shape == (65, 4, 7, 7)
