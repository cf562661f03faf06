import torch

from framework.models.ops.assigners import NEGATIVE
from framework.models.ops.point_assigners import CenterSamplingAssigner, default_regress_ranges


def test_default_ranges_are_fcos():
    assert default_regress_ranges([8, 16, 32, 64, 128]) == [(0.0, 64.0), (64.0, 128.0), (128.0, 256.0),
                                                           (256.0, 512.0), (512.0, float("inf"))]


def test_center_sampling_assignment():
    points = torch.tensor([[20.0, 20.0], [6.0, 6.0], [60.0, 60.0], [21.0, 21.0]])
    strides = torch.tensor([8.0, 8.0, 8.0, 8.0])
    ranges = torch.tensor([[0.0, 64.0]] * 4)
    gt = torch.tensor([[[0.0, 0, 40, 40], [14, 14, 28, 28], [0, 0, 0, 0]]])  # last one is padding
    valid = torch.tensor([[True, True, False]])
    out = CenterSamplingAssigner(radius=1.5).assign(points, strides, ranges, gt, valid)
    # (20,20) lies in both boxes and near both centres: the smaller box wins
    # (6,6) is inside the big box but 14 px from its centre > 1.5 * 8 → negative with centre sampling
    assert out.tolist() == [[1, NEGATIVE, NEGATIVE, 1]]
    loose = CenterSamplingAssigner(center_sampling=False).assign(points, strides, ranges, gt, valid)
    assert loose.tolist() == [[1, 0, NEGATIVE, 1]]
    # a level range that the box's reach (max distance 20) does not fall in → negative
    far = CenterSamplingAssigner().assign(points, strides, torch.tensor([[64.0, 128.0]] * 4), gt, valid)
    assert (far == NEGATIVE).all()


def test_batch_equals_single_images():
    torch.manual_seed(0)
    points = torch.rand(200, 2) * 64
    strides = torch.full((200,), 8.0)
    ranges = torch.tensor([[0.0, float("inf")]]).expand(200, 2)
    a = torch.tensor([[[0.0, 0, 30, 30], [20, 20, 60, 50]]])
    b = torch.tensor([[[5.0, 10, 50, 40], [0, 0, 0, 0]]])
    assigner = CenterSamplingAssigner()
    both = assigner.assign(points, strides, ranges, torch.cat([a, b]), torch.tensor([[True, True], [True, False]]))
    assert torch.equal(both[0], assigner.assign(points, strides, ranges, a, torch.tensor([[True, True]]))[0])
    assert torch.equal(both[1], assigner.assign(points, strides, ranges, b[:, :1], torch.tensor([[True]]))[0])
