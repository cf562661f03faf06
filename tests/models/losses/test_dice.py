"""Mask losses against values computed by hand: soft Dice 1 − (2|X∩Y| + s)/(|X| + |Y| + s) per instance, BCE as the
mean over each instance's pixels, their weighted sum, per-instance weights, and the sum over instances."""
from __future__ import annotations

import math

import pytest
import torch

from framework.models.losses import BCEDiceLoss, DiceLoss, MaskBCELoss

# one 2x2 instance: logits 0 everywhere (p = 0.5), one foreground pixel
ZERO_LOGITS = torch.zeros(1, 2, 2)
ONE_PIXEL = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])


def test_dice_by_hand():
    # |X∩Y| = 0.5, |X| = 2, |Y| = 1: with s = 1, 1 − (1 + 1) / (3 + 1) = 0.5; with s = 0, 1 − 1/3
    assert DiceLoss(smooth=1.0)(ZERO_LOGITS, ONE_PIXEL).item() == pytest.approx(0.5)
    assert DiceLoss(smooth=0.0)(ZERO_LOGITS, ONE_PIXEL).item() == pytest.approx(2 / 3)
    # p = sigmoid(ln 3) = 0.75 on the foreground pixel, sigmoid(-ln 3) = 0.25 on the three others:
    # |X∩Y| = 0.75, |X| = 1.5, |Y| = 1, s = 1 -> 1 - 2.5 / 3.5
    logits = torch.tensor([[[math.log(3), -math.log(3)], [-math.log(3), -math.log(3)]]])
    assert DiceLoss()(logits, ONE_PIXEL).item() == pytest.approx(1 - 2.5 / 3.5)


def test_dice_of_a_perfect_and_an_empty_prediction():
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    perfect = (target * 2 - 1) * 50  # sigmoid 1 on the mask, 0 elsewhere
    assert DiceLoss()(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    empty = torch.zeros(1, 2, 2)
    assert DiceLoss()(torch.full((1, 2, 2), -50.0), empty).item() == pytest.approx(0.0, abs=1e-6)  # s keeps 0/0 away
    # nothing predicted for a 2-pixel mask: 1 - (0 + 1) / (0 + 2 + 1)
    assert DiceLoss()(torch.full((1, 2, 2), -50.0), target).item() == pytest.approx(2 / 3, abs=1e-6)


def test_bce_by_hand():
    # logits 0: ln 2 on every pixel, whatever the target
    assert MaskBCELoss()(ZERO_LOGITS, ONE_PIXEL).item() == pytest.approx(math.log(2))
    # one pixel at logit 2 with target 1 (-ln σ(2)), three at logit 2 with target 0 (-ln(1 - σ(2))): their mean
    logits = torch.full((1, 2, 2), 2.0)
    s = 1 / (1 + math.exp(-2))
    assert MaskBCELoss()(logits, ONE_PIXEL).item() == pytest.approx((-math.log(s) - 3 * math.log(1 - s)) / 4)


def test_instances_are_summed_weighted_and_scaled():
    logits = torch.cat([ZERO_LOGITS, ZERO_LOGITS])
    targets = torch.cat([ONE_PIXEL, torch.ones(1, 2, 2)])
    # second instance: |X∩Y| = 2, |X| = 2, |Y| = 4 -> 1 - 5/7
    per = [0.5, 1 - 5 / 7]
    assert DiceLoss()(logits, targets).item() == pytest.approx(sum(per))
    assert DiceLoss()(logits, targets, weight=torch.tensor([0.0, 2.0])).item() == pytest.approx(2 * per[1])
    assert DiceLoss(loss_weight=3.0)(logits, targets).item() == pytest.approx(3 * sum(per))
    combined = BCEDiceLoss(bce_weight=2.0, dice_weight=0.5)(logits, targets).item()
    assert combined == pytest.approx(2 * 2 * math.log(2) + 0.5 * sum(per))


def test_gradients_flow_and_shapes_are_checked():
    logits = torch.randn(3, 7, 7, requires_grad=True)
    targets = (torch.rand(3, 7, 7) > 0.5).float()
    BCEDiceLoss()(logits, targets).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"mask logits \(3, 7, 7\) and targets \(3, 6, 6\) differ"):
        DiceLoss()(logits, targets[:, :6, :6])
    with pytest.raises(ValueError, match="smooth=-1"):
        DiceLoss(smooth=-1)
