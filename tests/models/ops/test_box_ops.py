import torch

from framework.models.ops.anchors import AnchorGenerator
from framework.models.ops.box_coder import DeltaBoxCoder
from framework.models.ops.postprocess import multiclass_nms


def test_box_coder_round_trip():
    coder = DeltaBoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    anchors = torch.tensor([[0.0, 0, 20, 10], [5, 5, 45, 85]])
    boxes = torch.tensor([[2.0, 1, 18, 13], [0, 10, 50, 70]])
    torch.testing.assert_close(coder.decode(coder.encode(boxes, anchors), anchors), boxes)


def test_anchor_layout_and_sizes():
    gen = AnchorGenerator(strides=[8, 16], octave_base_scale=4, scales_per_octave=1, ratios=[1.0])
    anchors = gen.grid_anchors([(2, 3), (1, 2)], torch.device("cpu"))
    assert anchors.shape == (2 * 3 + 1 * 2, 4)
    # first anchor of level 0: centred at (4, 4), side 32
    torch.testing.assert_close(anchors[0], torch.tensor([-12.0, -12.0, 20.0, 20.0]))
    # row-major order: the second anchor is one stride to the right
    torch.testing.assert_close(anchors[1] - anchors[0], torch.tensor([8.0, 0.0, 8.0, 0.0]))
    # level 1 anchors have side 64
    torch.testing.assert_close(anchors[6, 2] - anchors[6, 0], torch.tensor(64.0))
    ratio = AnchorGenerator([8], 4, 1, [2.0]).base_anchors[0][0]
    torch.testing.assert_close((ratio[3] - ratio[1]) / (ratio[2] - ratio[0]), torch.tensor(2.0))


def test_nms_is_per_image_and_per_class():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.5, 0, 10, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    image_idx = torch.tensor([0, 0, 0, 1])
    out = multiclass_nms(boxes, scores, labels, image_idx, num_images=2, num_classes=2, iou_thr=0.5, max_per_img=10)
    assert out[0]["scores"].tolist() == [0.8999999761581421, 0.699999988079071]  # the 0.8 box is suppressed
    assert out[0]["labels"].tolist() == [0, 1]
    assert out[1]["scores"].numel() == 1


def test_torchvision_style_anchors_match_torchvision():
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    sizes = [[32, 40, 50], [64, 80, 101]]
    ours = AnchorGenerator([8, 16], ratios=[0.5, 1.0, 2.0], sizes=sizes, torchvision_style=True)
    tv = TVAnchorGenerator(tuple(tuple(s) for s in sizes), ((0.5, 1.0, 2.0),) * 2)
    # a 96 x 160 input: level 1 has 6 x 10 cells; make level 2 irregular (5 x 7) as with odd padded sizes
    feats = [torch.zeros(1, 1, 12, 20), torch.zeros(1, 1, 5, 7)]
    expected = tv(ImageList(torch.zeros(1, 3, 96, 160), [(96, 160)]), feats)[0]
    torch.testing.assert_close(ours.grid_anchors([(12, 20), (5, 7)], torch.device("cpu")), expected)


def test_distance_coder_round_trip_and_points():
    from framework.models.ops.anchors import PointGenerator
    from framework.models.ops.box_coder import DistanceBoxCoder

    points, strides = PointGenerator([8, 16], offset=0.5).grid_points([(2, 2), (1, 1)], torch.device("cpu"))
    assert points.tolist() == [[4, 4], [12, 4], [4, 12], [12, 12], [8, 8]] and strides.tolist() == [8, 8, 8, 8, 16]
    coder = DistanceBoxCoder(normalize=True)
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 5)
    enc = coder.encode(boxes, points, strides)
    torch.testing.assert_close(enc[0], torch.tensor([0.5, 0.5, 0.75, 0.75]))
    torch.testing.assert_close(coder.decode(enc, points, strides), boxes)
