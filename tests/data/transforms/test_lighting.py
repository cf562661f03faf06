import pytest
import torch
from torchvision import tv_tensors

from framework.data.transforms import PCALighting
from framework.data.transforms.lighting import IMAGENET_EIGVAL, IMAGENET_EIGVEC


def sample(dtype=torch.uint8):
    torch.manual_seed(7)
    image = torch.randint(40, 200, (3, 32, 48), dtype=torch.uint8)
    if dtype != torch.uint8:
        image = image.to(dtype) / 255
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[1.0, 2.0, 20.0, 30.0]]), format="XYXY", canvas_size=(32, 48))
    return tv_tensors.Image(image), {"boxes": boxes, "labels": torch.tensor([0])}


def test_offset_is_the_pca_combination_for_float_images():
    image, target = sample(torch.float32)
    torch.manual_seed(0)
    out, out_target = PCALighting(std=0.1)(image, target)
    torch.manual_seed(0)
    torch.rand(())  # the apply-or-not draw
    alpha = torch.randn(3) * 0.1
    expected = torch.tensor(IMAGENET_EIGVEC) @ (alpha * torch.tensor(IMAGENET_EIGVAL))
    # pixels are well inside [0, 1], so nothing is clipped: one offset per channel, the same for every pixel
    assert torch.allclose(out - image, expected[:, None, None].expand_as(image), atol=1e-6)
    assert torch.equal(out_target["boxes"], target["boxes"])
    assert isinstance(out, tv_tensors.Image)


def test_uint8_images_shift_by_the_scaled_offset_and_stay_uint8():
    image, target = sample()
    torch.manual_seed(1)
    out, _ = PCALighting(std=0.5)(image, target)
    assert out.dtype == torch.uint8
    shift = out.int() - image.int()
    for c in range(3):  # one integer shift per channel, up to rounding
        assert shift[c].max() - shift[c].min() <= 1


def test_zero_std_or_zero_prob_is_the_identity_and_seeds_repeat():
    image, target = sample()
    assert torch.equal(PCALighting(std=0.0)(image, target)[0], image)
    assert torch.equal(PCALighting(prob=0.0)(image, target)[0], image)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(torch.stack([PCALighting(std=0.3)(image, target)[0] for _ in range(4)]))
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("kwargs", [dict(std=-0.1), dict(prob=2.0), dict(eigvec=[[1.0, 0.0]])])
def test_bad_arguments_name_the_transform(kwargs):
    with pytest.raises(ValueError, match="PCALighting"):
        PCALighting(**kwargs)
