import pytest
import torch
from torchvision import tv_tensors

from framework.data.transforms import GaussianNoise, Letterbox, RandomAffine
from tests.data.transforms.samples import make_sample


def sample(h=40, w=60, boxes=((10.0, 5.0, 30.0, 25.0),), masks=True):
    torch.manual_seed(0)
    return make_sample(torch.randint(0, 256, (3, h, w), dtype=torch.uint8), boxes, masks=masks)


def test_identity_parameters_leave_everything_unchanged():
    image, target = sample()
    out, out_t = RandomAffine(degrees=0, translate=0, scale=(1, 1))(image, target)
    assert torch.equal(out, image) and isinstance(out, tv_tensors.Image)
    assert torch.equal(out_t["boxes"].as_subclass(torch.Tensor), target["boxes"].as_subclass(torch.Tensor))
    assert torch.equal(out_t["masks"], target["masks"])


def test_output_size_centres_the_input_and_scale_maps_boxes():
    image, target = sample()
    out, out_t = RandomAffine(degrees=0, translate=0, scale=(2, 2), output_size=(100, 140), fill=7)(image, target)
    assert out.shape == (3, 100, 140)
    # the input centre (30, 20) lands on the output centre (70, 50), scaled ×2 around it
    expected = torch.tensor([[70 + 2 * (10 - 30), 50 + 2 * (5 - 20), 70 + 2 * (30 - 30), 50 + 2 * (25 - 20)]])
    assert torch.allclose(out_t["boxes"].as_subclass(torch.Tensor), expected.float())
    assert out[:, 0, 0].tolist() == [7, 7, 7]  # outside the scaled input (which spans x 10..130, y 10..90)
    assert out_t["masks"].shape == (1, 100, 140) and out_t["masks"].sum() == 40 * 40
    assert out_t["boxes"].canvas_size == (100, 140)


def test_rotation_by_90_degrees_is_exact():
    image, target = sample(h=40, w=40, boxes=((4.0, 8.0, 12.0, 30.0),))
    affine = RandomAffine(degrees=90, translate=0, scale=(1, 1))
    m, scale = affine.matrix(40, 40, 40, 40, u=torch.tensor([0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5]))  # angle +90°
    out, out_t = affine.apply(image, target, m, scale, (40, 40))
    # +90° in image coordinates (y down) maps (x, y) to (40 − y, x) about the centre (20, 20)
    assert torch.equal(out, torch.rot90(image, -1, dims=(1, 2)))
    assert torch.allclose(out_t["boxes"].as_subclass(torch.Tensor), torch.tensor([[10.0, 4.0, 32.0, 12.0]]), atol=1e-4)
    assert torch.equal(out_t["masks"][0], torch.rot90(target["masks"][0], -1, dims=(0, 1)))


def test_boxes_pushed_out_are_dropped_with_their_masks():
    image, target = sample(boxes=((0.0, 0.0, 10.0, 10.0), (20.0, 10.0, 40.0, 30.0)))
    # translate right by 0.5 of the width exactly: the first box stays, nothing is out; then shift out the first
    affine = RandomAffine(degrees=0, translate=0, scale=(1, 1), output_size=(40, 20))  # keeps x 20..40 of input
    out, out_t = affine(image, target)
    assert out_t["labels"].tolist() == [1] and out_t["masks"].shape == (1, 40, 20)
    assert torch.allclose(out_t["boxes"].as_subclass(torch.Tensor), torch.tensor([[0.0, 10.0, 20.0, 30.0]]))


def test_letterbox_fits_and_pads():
    image, target = sample()
    out, out_t = Letterbox(120, fill=9)(image, target)  # scale = min(120/40, 120/60) = 2 → 80×120, pad 20 top/bottom
    assert out.shape == (3, 120, 120)
    assert out[:, :20].eq(9).all() and out[:, 100:].eq(9).all()
    assert torch.allclose(out_t["boxes"].as_subclass(torch.Tensor), torch.tensor([[20.0, 30.0, 60.0, 70.0]]))
    assert out_t["masks"].shape == (1, 120, 120) and out_t["masks"][0, :20].sum() == 0
    out, out_t = Letterbox((50, 100), center=False, scale_up=False)(image, target)  # no enlarging: pad only
    assert out.shape == (3, 50, 100) and torch.equal(out[:, :40, :60], image)
    assert torch.equal(out_t["boxes"].as_subclass(torch.Tensor), target["boxes"].as_subclass(torch.Tensor))


def test_gaussian_noise_is_seeded_bounded_and_keeps_dtype():
    image, target = sample(masks=False)
    noise = GaussianNoise(max_sigma=0.05, prob=1.0)
    torch.manual_seed(3)
    a, ta = noise(image, target)
    torch.manual_seed(3)
    b, _ = noise(image, target)
    assert torch.equal(a, b) and a.dtype == torch.uint8 and not torch.equal(a, image)
    assert (a.float() - image.float()).std() < 0.05 * 255 * 1.2
    assert torch.equal(ta["boxes"], target["boxes"])
    assert torch.equal(GaussianNoise(prob=0.0)(image, target)[0], image)
    f = image.float() / 255
    out = GaussianNoise(prob=1.0)(tv_tensors.Image(f), target)[0]
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
