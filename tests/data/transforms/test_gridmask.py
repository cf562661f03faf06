import pytest
import torch
from torchvision import tv_tensors

from framework.data.transforms import GridMask, Normalize

MEAN = (0.485, 0.456, 0.406)


def sample(h: int = 96, w: int = 128):
    torch.manual_seed(123)
    image = tv_tensors.Image(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[10.0, 12.0, 50.0, 60.0]]), format="XYXY", canvas_size=(h, w))
    return image, {"boxes": boxes, "labels": torch.tensor([2])}


def test_hidden_fraction_follows_the_ratio_and_pixels_take_the_mean():
    image, target = sample()
    gm = GridMask(d1=16, d2=16, ratio=0.5, mode=1, prob=1.0, fill=MEAN)
    torch.manual_seed(0)
    out, out_target = gm(image, target)
    hidden = (out != image).any(0)
    # squares of side d - l = 8 every 16 px: a quarter of the pixels, whatever the shift (96 and 128 are multiples of 16)
    assert hidden.float().mean().item() == pytest.approx(0.25, abs=0.02)
    torch.manual_seed(0)
    torch.rand(())  # the draw that decides whether to apply it
    mask = gm.hidden_mask(96, 128)
    expected_fill = torch.tensor([round(m * 255) for m in MEAN], dtype=torch.uint8)
    assert torch.equal(out[:, mask], expected_fill[:, None].expand(3, int(mask.sum())))
    assert torch.equal(out[:, ~mask], image[:, ~mask])
    assert torch.equal(out_target["boxes"], target["boxes"]) and torch.equal(out_target["labels"], target["labels"])
    assert isinstance(out, tv_tensors.Image)


def test_mode_zero_hides_the_bands_instead():
    gm1 = GridMask(d1=20, d2=20, ratio=0.6, mode=1, prob=1.0)
    gm0 = GridMask(d1=20, d2=20, ratio=0.6, mode=0, prob=1.0)
    torch.manual_seed(5)
    m1 = gm1.hidden_mask(100, 100)
    torch.manual_seed(5)
    m0 = gm0.hidden_mask(100, 100)
    assert torch.equal(m0, ~m1)
    assert m1.float().mean().item() == pytest.approx(0.4 ** 2, abs=1e-6)  # 100 is a multiple of d = 20


def test_rotated_grid_keeps_the_size_and_the_hidden_fraction():
    gm = GridMask(d1=16, d2=16, ratio=0.5, rotate=90, prob=1.0)
    torch.manual_seed(1)
    mask = gm.hidden_mask(90, 130)
    assert mask.shape == (90, 130)
    assert mask.float().mean().item() == pytest.approx(0.25, abs=0.05)


def test_before_normalize_the_hidden_pixels_end_at_zero():
    image, target = sample()
    gm = GridMask(d1=16, d2=16, prob=1.0, fill=MEAN)
    torch.manual_seed(3)
    out, _ = gm(image, target)
    torch.manual_seed(3)
    torch.rand(())
    mask = gm.hidden_mask(96, 128)
    normalized, _ = Normalize(mean=MEAN)(out, target)
    assert normalized[:, mask].abs().max().item() < 0.5 / 255 / 0.224  # zero up to the uint8 rounding of the mean


def test_probability_ramps_with_the_epochs():
    gm = GridMask(prob=0.8, ramp_epochs=4)
    assert gm.effective_prob == 0.0
    gm.set_epoch(2)
    assert gm.effective_prob == pytest.approx(0.4)
    gm.set_epoch(10)
    assert gm.effective_prob == pytest.approx(0.8)
    image, target = sample()
    gm.set_epoch(0)
    out, _ = gm(image, target)
    assert torch.equal(out, image)
    gm.set_epoch(2)
    torch.manual_seed(0)
    applied = sum(not torch.equal(gm(image, target)[0], image) for _ in range(400))
    assert 0.33 < applied / 400 < 0.47


def test_seeded_runs_are_identical():
    image, target = sample()
    gm = GridMask(d1=8, d2=40, rotate=30, prob=0.5)
    outs = []
    for _ in range(2):
        torch.manual_seed(42)
        outs.append(torch.stack([gm(image, target)[0] for _ in range(5)]))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("kwargs", [dict(d1=10, d2=5), dict(ratio=1.0), dict(mode=2), dict(prob=1.5),
                                    dict(ramp_epochs=-1)])
def test_bad_arguments_name_the_parameter(kwargs):
    with pytest.raises(ValueError, match="GridMask"):
        GridMask(**kwargs)


@pytest.mark.parametrize("mode,ratio", [(1, 0.6), (0, 0.6), (1, 0.4), (0, 0.3)])
def test_masked_fraction_over_many_draws_matches_the_formula(mode, ratio):
    """Random period, random shift, square images, no rotation: the mean hidden fraction is (1 − ratio)² for
    mode 1 and 1 − (1 − ratio)² for mode 0 (up to rounding the band to whole pixels)."""
    gm = GridMask(d1=20, d2=80, ratio=ratio, mode=mode, prob=1.0)
    torch.manual_seed(0)
    fraction = torch.stack([gm.hidden_mask(160, 160).float().mean() for _ in range(300)]).mean().item()
    expected = (1 - ratio) ** 2 if mode == 1 else 1 - (1 - ratio) ** 2
    assert fraction == pytest.approx(expected, abs=0.015)
