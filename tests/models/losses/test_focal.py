import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from framework.models.losses import FocalLoss, VarifocalLoss


def test_focal_loss_matches_torchvision_and_weights_mask():
    logits, targets = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    expected = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="sum")
    torch.testing.assert_close(FocalLoss()(logits, targets), expected)
    weight = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    masked = sigmoid_focal_loss(logits[[0, 2]], targets[[0, 2]], reduction="sum")
    torch.testing.assert_close(FocalLoss()(logits, targets, weight), masked)


def test_varifocal_weights_positives_by_their_iou_target_and_focuses_negatives():
    logits = torch.tensor([[2.0, -1.0], [0.5, -3.0]])
    q = torch.tensor([[0.8, 0.0], [0.0, 0.0]])  # one positive with IoU 0.8
    p = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, q, reduction="none")
    weight = torch.where(q > 0, q, 0.75 * p**2)
    torch.testing.assert_close(VarifocalLoss()(logits, q), (bce * weight).sum())
    assert VarifocalLoss.iou_aware and VarifocalLoss.use_sigmoid and FocalLoss.use_sigmoid
