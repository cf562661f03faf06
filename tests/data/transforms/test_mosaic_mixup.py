import pytest
import torch
from torchvision import tv_tensors

from framework.data.transforms import MixUp, Mosaic
from tests.data.transforms.samples import make_sample


def solid(value: int, h: int, w: int, boxes=((2.0, 2.0, 10.0, 10.0),), label: int = 0, image_id: int = 0,
          masks: bool = False):
    return make_sample(torch.full((3, h, w), value, dtype=torch.uint8), boxes, torch.full((len(boxes),), label),
                       masks, image_id=image_id, orig_size=(h, w))


def test_four_tiles_meet_at_the_centre_with_shifted_boxes():
    tiles = [solid(10 * (k + 1), 30, 40, label=k, image_id=k, masks=True) for k in range(4)]
    mosaic = Mosaic(size=50, center_range=(1.0, 1.0), min_area_ratio=0.0)  # centre at (50, 50)
    image, target = mosaic(tiles[0], tiles[1:])
    assert image.shape == (3, 100, 100)
    # top-left tile ends at the centre, top-right starts there, …; the rest is the grey fill
    assert image[0, 49, 49] == 10 and image[0, 49, 50] == 20 and image[0, 50, 49] == 30 and image[0, 50, 50] == 40
    assert image[0, 0, 0] == 114 and image[0, 19, 10] == 114 and image[0, 20, 9] == 114 and image[0, 20, 10] == 10
    expected = torch.tensor([[12.0, 22, 20, 30], [52, 22, 60, 30], [12, 52, 20, 60], [52, 52, 60, 60]])
    assert torch.equal(target["boxes"].as_subclass(torch.Tensor), expected)
    assert target["labels"].tolist() == [0, 1, 2, 3] and target["source_ids"] == [0, 1, 2, 3]
    assert target["image_id"] == 0 and target["boxes"].canvas_size == (100, 100)
    # masks follow the boxes
    for m, (x0, y0, x1, y1) in zip(target["masks"], expected.int().tolist()):
        assert m.sum() == (x1 - x0) * (y1 - y0) and m[y0:y1, x0:x1].all()


def test_cut_boxes_are_clipped_and_filtered_by_kept_area():
    # a 20×20 box at the left edge of the top-left tile, centre such that 3 of its 20 columns remain: 15 % is
    # kept at min_area_ratio 0.1 and dropped at 0.2
    tiles = [solid(1, 40, 40, boxes=((0.0, 20.0, 20.0, 40.0),))] + [solid(2, 40, 40, boxes=())] * 3
    for ratio, kept in ((0.1, 1), (0.2, 0)):
        mosaic = Mosaic(size=40, center_range=(23 / 40, 23 / 40), min_area_ratio=ratio)
        _, target = mosaic(tiles[0], tiles[1:])
        assert len(target["boxes"]) == kept
        if kept:
            assert torch.allclose(target["boxes"].as_subclass(torch.Tensor), torch.tensor([[0.0, 3.0, 3.0, 23.0]]))


def test_nine_tiles_and_large_tiles_are_shrunk():
    tiles = [solid(k + 1, 64, 48, image_id=k) for k in range(9)]
    torch.manual_seed(0)
    image, target = Mosaic(size=32, grid=3)(tiles[0], tiles[1:])
    assert image.shape == (3, 64, 64)
    assert set(image[0].unique().tolist()) - {114} <= set(range(1, 10))
    assert (image[0] == 1).any()  # the sample itself sits in the centre cell, always in the window
    boxes = target["boxes"].as_subclass(torch.Tensor)
    assert (boxes >= 0).all() and (boxes <= 64).all()
    # tiles were shrunk to a longer side of 32: the 8×8 boxes became 4×4 (or were clipped)
    sides = boxes[:, 2:] - boxes[:, :2]
    assert (sides <= 4.0 + 1e-5).all() and len(target["source_ids"]) == 9


def test_mixup_blends_with_a_beta_ratio_and_concatenates_labels():
    a = solid(200, 40, 60, boxes=((1.0, 1.0, 5.0, 5.0),), label=1, image_id=7)
    b = solid(100, 40, 60, boxes=((10.0, 10.0, 30.0, 30.0),), label=2, image_id=8)
    torch.manual_seed(0)
    image, target = MixUp(alpha=1e6, scale_range=(1.0, 1.0))(a, [b])  # same size, r ≈ 0.5: exact overlay
    assert image.dtype == torch.uint8 and image.shape == (3, 40, 60)
    assert (image.int() - 150).abs().max() <= 1
    assert target["labels"].tolist() == [1, 2] and target["source_ids"] == [7, 8] and target["image_id"] == 7
    assert torch.allclose(target["boxes"].as_subclass(torch.Tensor), torch.tensor([[1.0, 1, 5, 5], [10, 10, 30, 30]]))
    ratios = []
    for seed in range(200):
        torch.manual_seed(seed)
        mixed, _ = MixUp(alpha=2.0, scale_range=(1.0, 1.0))(a, [b])
        ratios.append((mixed.float().mean().item() - 100) / 100)
    mean = sum(ratios) / len(ratios)
    assert 0.45 < mean < 0.55 and min(ratios) < 0.2 and max(ratios) > 0.8  # Beta(2, 2): mean ½, wide


@pytest.mark.parametrize("cls,kwargs", [(Mosaic, dict(grid=4)), (Mosaic, dict(prob=2.0)),
                                        (Mosaic, dict(center_range=(1.5, 0.5))), (MixUp, dict(alpha=0)),
                                        (MixUp, dict(scale_range=(2.0, 1.0)))])
def test_bad_arguments_name_the_transform(cls, kwargs):
    with pytest.raises(ValueError, match=cls.__name__):
        cls(**kwargs)
