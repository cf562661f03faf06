import pytest
import torch
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import distance_box_iou

from framework.models.ops.nms import batched_nms, diou_nms
from framework.models.ops.postprocess import Postprocessor


def reference_diou_nms(boxes, scores, groups, thr):
    """The textbook greedy loop, one box at a time."""
    order = scores.argsort(descending=True).tolist()
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if groups[j] != groups[i] or distance_box_iou(boxes[i:i + 1], boxes[j:j + 1]).item() <= thr]
    return keep


def test_diou_nms_keeps_neighbours_that_plain_nms_would_suppress():
    # two same-size boxes side by side overlapping at IoU 0.6 but with distant centres
    boxes = torch.tensor([[0.0, 0, 40, 20], [10, 0, 50, 20]])
    scores, groups = torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.long)
    # IoU 0.6, DIoU 0.6 - 10²/(50² + 20²) = 0.566
    assert batched_nms(boxes, scores, groups, 0.58, "nms").tolist() == [0]
    assert batched_nms(boxes, scores, groups, 0.58, "diou").tolist() == [0, 1]


def test_diou_nms_equals_the_greedy_reference_and_respects_groups():
    torch.manual_seed(0)
    xy = torch.rand(300, 2) * 100
    boxes = torch.cat([xy, xy + 10 + torch.rand(300, 2) * 40], 1)
    scores, groups = torch.rand(300), torch.randint(0, 3, (300,))
    got = diou_nms(boxes, scores, groups, 0.5, block=64).tolist()
    assert got == reference_diou_nms(boxes, scores, groups, 0.5)
    # with DIoU's penalty disabled by identical centres the two NMS agree on a concentric set
    same = torch.tensor([[0.0, 0, 10, 10], [1, 1, 9, 9], [2, 2, 8, 8]])
    s = torch.tensor([0.9, 0.8, 0.7])
    g = torch.zeros(3, dtype=torch.long)
    assert diou_nms(same, s, g, 0.5).tolist() == tv_batched_nms(same, s, g, 0.5).tolist()
    assert diou_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0


def test_postprocessor_clips_before_nms_and_rescales():
    # two boxes that overlap only outside the image: after clipping they are identical, so one is suppressed
    boxes = torch.tensor([[-50.0, 0, 10, 10], [-20, 0, 10, 10], [2, 2, 8, 8]])
    scores, labels, image_idx = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1]), torch.zeros(3, dtype=torch.long)
    post = Postprocessor(score_thr=0.0, nms_iou_thr=0.5, max_per_img=10)
    out = post(boxes, scores, labels, image_idx, 2, image_sizes=[(20, 20)], orig_sizes=[(40, 80)])[0]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7])
    torch.testing.assert_close(out["boxes"][0], torch.tensor([0.0, 0, 40, 20]))  # clipped, then x4 / x2
    with pytest.raises(ValueError, match="nms_type"):
        Postprocessor(nms_type="soft")
