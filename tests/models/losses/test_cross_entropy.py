"""Label smoothing: the target distributions the losses train towards."""
import math

import pytest
import torch
import torch.nn.functional as F

from framework.models.losses import BCEWithLogitsLoss, CrossEntropyLoss, smooth_binary_targets


def test_softmax_label_smoothing_is_one_minus_eps_onehot_plus_eps_over_k():
    torch.manual_seed(0)
    k, eps = 5, 0.1
    logits, labels = torch.randn(7, k), torch.randint(0, k, (7,))
    target = (1 - eps) * F.one_hot(labels, k).float() + eps / k
    assert torch.allclose(target.sum(1), torch.ones(7))
    assert target.max().item() == pytest.approx(1 - eps + eps / k) and target.min().item() == pytest.approx(eps / k)
    expected = -(target * F.log_softmax(logits, -1)).sum()
    torch.testing.assert_close(CrossEntropyLoss(label_smoothing=eps)(logits, labels), expected)
    # ε = 0 is plain cross-entropy; loss_weight scales; a per-sample weight masks samples
    torch.testing.assert_close(CrossEntropyLoss()(logits, labels), F.cross_entropy(logits, labels, reduction="sum"))
    torch.testing.assert_close(CrossEntropyLoss(loss_weight=2.0)(logits, labels),
                               2 * F.cross_entropy(logits, labels, reduction="sum"))
    w = torch.tensor([1.0, 0, 0, 0, 0, 0, 1])
    torch.testing.assert_close(CrossEntropyLoss()(logits, labels, w),
                               F.cross_entropy(logits[[0, 6]], labels[[0, 6]], reduction="sum"))


def test_sigmoid_label_smoothing_targets_eps_over_two():
    eps = 0.2
    t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.5]])
    smoothed = smooth_binary_targets(t, eps)
    torch.testing.assert_close(smoothed, t * (1 - eps) + eps / 2)
    assert smoothed[0, 0].item() == pytest.approx(1 - eps / 2) and smoothed[0, 1].item() == pytest.approx(eps / 2)
    logits = torch.randn(2, 3)
    p = logits.sigmoid()
    expected = -(smoothed * p.log() + (1 - smoothed) * (1 - p).log()).sum()
    torch.testing.assert_close(BCEWithLogitsLoss(label_smoothing=eps)(logits, t), expected, atol=1e-5, rtol=1e-5)
    # the optimum of the smoothed BCE is the smoothed target: logit = log((1 - ε/2) / (ε/2)) for a positive
    best = torch.tensor([[math.log((1 - eps / 2) / (eps / 2))]], requires_grad=True)
    BCEWithLogitsLoss(label_smoothing=eps)(best, torch.ones(1, 1)).backward()
    assert abs(best.grad.item()) < 1e-6


def test_smoothing_out_of_range_is_refused():
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="label_smoothing"):
            CrossEntropyLoss(label_smoothing=bad)
        with pytest.raises(ValueError, match="label_smoothing"):
            BCEWithLogitsLoss(label_smoothing=bad)
