import colorsys

import pytest
import torch
from torchvision import tv_tensors

from framework.data.transforms import HSVJitter
from framework.data.transforms.hsv import jitter_hsv


def pixels(image: torch.Tensor) -> list[tuple[float, float, float]]:
    return [colorsys.rgb_to_hsv(*map(float, image[:, i, j])) for i in range(image.shape[1]) for j in range(image.shape[2])]


def float_image(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(3, 6, 7) * 0.8 + 0.1


@pytest.mark.parametrize("gain", [0.3, 1.0, 1.6, 5.0])
def test_saturation_gain_matches_hsv_and_keeps_hue_and_value(gain):
    image = float_image()
    image[:, 0, 0] = 0.5  # a grey pixel
    out = jitter_hsv(image, 0.0, gain, 1.0)
    for (h0, s0, v0), (h1, s1, v1) in zip(pixels(image), pixels(out)):
        assert s1 == pytest.approx(min(1.0, s0 * gain), abs=1e-5)
        assert v1 == pytest.approx(v0, abs=1e-6)
        if s0 > 1e-6 and s1 > 1e-6:
            assert min(abs(h1 - h0), 1 - abs(h1 - h0)) == pytest.approx(0.0, abs=1e-4)


def test_value_gain_and_hue_shift_against_colorsys():
    image = tv_tensors.Image(float_image(1))
    image[:, 0, 0] = torch.tensor([0.95, 0.6, 0.3])  # bright: V is capped at 1 if the gain is above 1
    jitter = HSVJitter(hue=0.1, saturation=0.0, value=0.2)
    torch.manual_seed(5)
    out = jitter(image)
    torch.manual_seed(5)
    torch.rand(())
    u = torch.rand(3) * 2 - 1
    shift, vgain = float(u[0]) * 0.1, 1 + float(u[2]) * 0.2
    assert vgain > 1.06  # seed 5 draws a gain that caps the bright pixel
    for (h0, s0, v0), (h1, s1, v1) in zip(pixels(image), pixels(out)):
        assert v1 == pytest.approx(min(1.0, v0 * vgain), abs=1e-5)
        assert (h1 - h0 - shift + 0.5) % 1.0 - 0.5 == pytest.approx(0.0, abs=1e-4)
        assert s1 == pytest.approx(s0, abs=1e-4)
    assert isinstance(out, tv_tensors.Image)


def test_uint8_boxes_untouched_seeded_and_identity_at_zero():
    torch.manual_seed(0)
    image = tv_tensors.Image(torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[1.0, 1.0, 9.0, 9.0]]), format="XYXY", canvas_size=(16, 16))
    torch.manual_seed(1)
    out, out_boxes = HSVJitter()(image, boxes)
    assert out.dtype == torch.uint8 and not torch.equal(out, image) and torch.equal(out_boxes, boxes)
    torch.manual_seed(1)
    assert torch.equal(HSVJitter()(image, boxes)[0], out)
    assert torch.equal(HSVJitter(hue=0.0, saturation=0.0, value=0.0)(image), image)
    assert torch.equal(HSVJitter(prob=0.0)(image), image)


@pytest.mark.parametrize("kwargs", [dict(hue=0.6), dict(saturation=1.5), dict(value=-0.1), dict(prob=3.0)])
def test_bad_arguments_name_the_transform(kwargs):
    with pytest.raises(ValueError, match="HSVJitter"):
        HSVJitter(**kwargs)
