import torch
from torchvision.ops import box_iou

from framework.models.ops.assigners import IGNORE, NEGATIVE, MaxIoUAssigner, batched_box_iou
from framework.models.ops.targets import pad_targets


def test_batched_iou_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 5, 2, generator=g) * 50
    boxes1 = torch.cat([a, a + torch.rand(3, 5, 2, generator=g) * 30 + 1], -1)
    b = torch.rand(7, 2, generator=g) * 50
    boxes2 = torch.cat([b, b + 10], -1)
    out = batched_box_iou(boxes1, boxes2)
    for i in range(3):
        torch.testing.assert_close(out[i], box_iou(boxes1[i], boxes2))


def test_assignment_rules_on_hand_built_case():
    anchors = torch.tensor([
        [0.0, 0, 10, 10],    # identical to gt 0 -> positive (0)
        [0.0, 0, 10, 14],    # IoU 0.714 with gt 0 -> positive
        [0.0, 0, 10, 22],    # IoU 0.4545 -> ignored (between 0.4 and 0.5)
        [50.0, 50, 60, 60],  # no overlap -> negative
        [100.0, 100, 130, 130],  # best anchor for gt 1 (IoU 0.36) -> low-quality positive
    ])
    gt = torch.tensor([[[0.0, 0, 10, 10], [100.0, 100, 150, 150]]])
    assigned = MaxIoUAssigner(0.5, 0.4).assign(anchors, gt, torch.ones(1, 2, dtype=torch.bool))
    assert assigned.tolist() == [[0, 0, IGNORE, NEGATIVE, 1]]
    strict = MaxIoUAssigner(0.5, 0.4, match_low_quality=False).assign(anchors, gt, torch.ones(1, 2, dtype=torch.bool))
    assert strict[0, 4] == NEGATIVE


def test_padded_ground_truth_never_matches():
    boxes, labels, valid = pad_targets(
        [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])},
         {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}], torch.device("cpu"))
    assert boxes.shape == (2, 1, 4) and valid.tolist() == [[True], [False]] and labels[1, 0] == -1
    anchors = torch.tensor([[0.0, 0, 10, 10]])
    assigned = MaxIoUAssigner().assign(anchors, boxes, valid)
    assert assigned.tolist() == [[0], [NEGATIVE]]
