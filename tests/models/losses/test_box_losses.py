import pytest
import torch
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from framework.models.losses import (
    CIoULoss, CrossEntropyLoss, DIoULoss, FocalLoss, GIoULoss, IoULoss, L1Loss, SmoothL1Loss, check_loss,
    elementwise_box_iou,
)

PRED = torch.tensor([[0.0, 0, 10, 10], [0, 0, 5, 5], [20, 0, 30, 10]])
TARGET = torch.tensor([[1.0, 1, 11, 11], [0, 0, 10, 10], [0, 0, 10, 10]])


def test_iou_family_on_boxes():
    iou = elementwise_box_iou(PRED, TARGET)
    torch.testing.assert_close(iou, torch.tensor([81 / 119, 0.25, 0.0]))
    torch.testing.assert_close(IoULoss()(PRED, TARGET), (1 - iou).sum())
    torch.testing.assert_close(GIoULoss(loss_weight=1.0)(PRED, TARGET), generalized_box_iou_loss(PRED, TARGET, reduction="sum"))
    torch.testing.assert_close(DIoULoss()(PRED, TARGET), distance_box_iou_loss(PRED, TARGET, reduction="sum"))
    torch.testing.assert_close(CIoULoss()(PRED, TARGET), complete_box_iou_loss(PRED, TARGET, reduction="sum"))
    # disjoint boxes: IoU loss is flat at 1, the others still see the distance
    assert IoULoss()(PRED[2:], TARGET[2:]).item() == pytest.approx(1.0)
    assert DIoULoss()(PRED[2:], TARGET[2:]).item() > 1.0 and GIoULoss(loss_weight=1.0)(PRED[2:], TARGET[2:]).item() > 1.0
    w = torch.tensor([1.0, 0.0, 2.0])
    torch.testing.assert_close(DIoULoss()(PRED, TARGET, w), (distance_box_iou_loss(PRED, TARGET) * w).sum())
    for loss in (IoULoss(), GIoULoss(), DIoULoss(), CIoULoss()):
        assert loss.on_boxes and loss(torch.zeros(0, 4), torch.zeros(0, 4)).item() == 0.0


def test_delta_losses():
    assert not L1Loss.on_boxes and not SmoothL1Loss.on_boxes
    assert L1Loss(loss_weight=2.0)(torch.ones(2, 4), torch.zeros(2, 4)).item() == 16.0
    assert SmoothL1Loss(beta=1.0)(torch.full((1, 4), 0.5), torch.zeros(1, 4)).item() == pytest.approx(4 * 0.125)
    assert L1Loss()(torch.ones(2, 4), torch.zeros(2, 4), torch.tensor([1.0, 0.0])).item() == 4.0


def test_check_loss_refuses_the_wrong_kind():
    with pytest.raises(ValueError, match="RetinaHead.cls_loss must be a sigmoid"):
        check_loss(CrossEntropyLoss(), "cls_loss", "RetinaHead", use_sigmoid=True)
    with pytest.raises(ValueError, match="must be a softmax"):
        check_loss(FocalLoss(), "cls_loss", "RoIBoxHead", use_sigmoid=False)
    with pytest.raises(ValueError, match="must be a box loss"):
        check_loss(FocalLoss(), "box_loss", "FCOSHead")


def test_ciou_is_finite_for_degenerate_predictions():
    pred = torch.tensor([[5.0, 5, 5, 5], [0, 0, 10, 0]], requires_grad=True)  # zero width and/or height
    loss = CIoULoss()(pred, torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
