import torch
from torchvision.ops import sigmoid_focal_loss

from framework.models.losses import FocalLoss, GIoULoss, L1Loss, SmoothL1Loss


def test_focal_loss_matches_torchvision_and_weights_mask():
    logits, targets = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    expected = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="sum")
    torch.testing.assert_close(FocalLoss()(logits, targets), expected)
    weight = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    masked = sigmoid_focal_loss(logits[[0, 2]], targets[[0, 2]], reduction="sum")
    torch.testing.assert_close(FocalLoss()(logits, targets, weight), masked)


def test_box_losses():
    pred = torch.tensor([[0.0, 0, 10, 10]])
    assert GIoULoss(loss_weight=1.0)(pred, pred).item() == 0.0
    far = torch.tensor([[20.0, 0, 30, 10]])
    assert GIoULoss(loss_weight=1.0)(pred, far).item() > 1.0  # GIoU < 0 for disjoint boxes
    assert not L1Loss.on_boxes and GIoULoss.on_boxes
    assert L1Loss(loss_weight=2.0)(torch.ones(2, 4), torch.zeros(2, 4)).item() == 16.0
    assert abs(SmoothL1Loss(beta=1.0)(torch.full((1, 4), 0.5), torch.zeros(1, 4)).item() - 4 * 0.125) < 1e-6
    assert GIoULoss()(torch.zeros(0, 4), torch.zeros(0, 4)).item() == 0.0
