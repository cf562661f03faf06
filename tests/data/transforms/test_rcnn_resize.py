"""`RCNNResize` after `Normalize` is torchvision's `GeneralizedRCNNTransform`, pixel for pixel."""
import pytest
import torch
from torchvision import tv_tensors
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from framework.data.transforms import Normalize, Pipeline, RCNNResize
from framework.data.transforms.rcnn_resize import rcnn_output_size

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.mark.parametrize("size", [(480, 640), (640, 427), (375, 500), (333, 1000), (1024, 2048), (37, 53)])
def test_pixels_and_boxes_equal_torchvision(size):
    g = torch.Generator().manual_seed(sum(size))
    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=g)
    boxes = torch.tensor([[1.0, 2.0, size[1] / 2, size[0] / 3], [0.0, 0.0, size[1], size[0]]])
    ours = Pipeline([Normalize(MEAN, STD), RCNNResize(600, 1000)])
    got, target = ours(tv_tensors.Image(image), {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=size), "labels": torch.tensor([0, 1])})
    reference = GeneralizedRCNNTransform(600, 1000, MEAN, STD).eval()
    tv_images, tv_targets = reference([image.float() / 255], [{"boxes": boxes.clone(), "labels": torch.tensor([0, 1])}])
    h, w = tv_images.image_sizes[0]
    assert tuple(got.shape[-2:]) == (h, w) == tuple(rcnn_output_size(*size, 600, 1000))
    assert torch.equal(got.as_subclass(torch.Tensor), tv_images.tensors[0, :, :h, :w])
    torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), tv_targets[0]["boxes"], rtol=1e-6, atol=1e-4)


def test_multi_scale_training_draws_a_size_per_image_and_evaluation_takes_the_last():
    image = tv_tensors.Image(torch.zeros(3, 100, 200))
    assert RCNNResize([50, 80], 1000)(image).shape[-2:] == (80, 160)
    seen = {tuple(RCNNResize([50, 80], 1000, random_choice=True)(image).shape[-2:]) for _ in range(40)}
    assert seen == {(50, 100), (80, 160)}


def test_it_refuses_an_image_that_is_not_normalized_yet():
    with pytest.raises(TypeError, match="after Normalize"):
        RCNNResize(600)(tv_tensors.Image(torch.zeros(3, 10, 10, dtype=torch.uint8)))
