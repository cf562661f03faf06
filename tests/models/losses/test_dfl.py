"""DistributionFocalLoss against values worked out by hand, and what it is for: the expectation of the learnt
distribution lands on a fractional target."""
import math

import pytest
import torch

from framework.models.losses import DistributionFocalLoss


def test_uniform_logits_cost_log_bins_whatever_the_target():
    # softmax of equal logits is 1/4 everywhere: each neighbour's cross-entropy is log 4, and the weights sum to 1
    pred = torch.zeros(2, 4, 4)
    target = torch.tensor([[0.0, 1.5, 2.25, 0.7]] * 2)
    assert DistributionFocalLoss(loss_weight=1.0)(pred, target).item() == pytest.approx(2 * math.log(4))


def test_hand_computed_two_bin_cross_entropy():
    # one box, one side, 3 bins, logits (0, ln 2, 0): probabilities (1/4, 1/2, 1/4)
    pred = torch.tensor([[[0.0, math.log(2.0), 0.0]]])
    # target 0.25 between bins 0 and 1: 0.75 * -ln(1/4) + 0.25 * -ln(1/2)
    expected = 0.75 * math.log(4) + 0.25 * math.log(2)
    assert DistributionFocalLoss(loss_weight=1.0)(pred, torch.tensor([[0.25]])).item() == pytest.approx(expected)
    # an integer target is plain cross-entropy to its bin
    assert DistributionFocalLoss(loss_weight=1.0)(pred, torch.tensor([[1.0]])).item() == pytest.approx(math.log(2))


def test_sides_are_averaged_boxes_weighted_and_summed_with_the_gain():
    pred = torch.tensor([[[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0]],
                         [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    target = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    box0 = (math.log(2) + math.log(3)) / 2  # side 1: uniform over 3 bins costs ln 3 for any target
    box1 = math.log(3)
    loss = DistributionFocalLoss(loss_weight=1.5)(pred, target, torch.tensor([0.5, 2.0]))
    assert loss.item() == pytest.approx(1.5 * (0.5 * box0 + 2.0 * box1))


def test_targets_are_clamped_inside_the_bins():
    pred = torch.randn(3, 4, 16, generator=torch.Generator().manual_seed(0))
    loss = DistributionFocalLoss(loss_weight=1.0)
    # beyond the last bin counts as 15 - 0.01 (0.99 of bin 15, 0.01 of bin 14); below 0 as 0
    torch.testing.assert_close(loss(pred, torch.full((3, 4), 40.0)), loss(pred, torch.full((3, 4), 14.99)))
    torch.testing.assert_close(loss(pred, torch.full((3, 4), -3.0)), loss(pred, torch.zeros(3, 4)))
    assert loss(torch.zeros(0, 4, 16), torch.zeros(0, 4)).item() == 0.0
    with pytest.raises(ValueError, match=r"\[N, S, n_bins\]"):
        loss(pred.flatten(1), torch.zeros(3, 4))


def test_minimizing_it_puts_the_expectation_on_the_target():
    logits = torch.zeros(1, 4, 16, requires_grad=True)
    target = torch.tensor([[0.0, 3.3, 7.5, 14.2]])
    optimizer = torch.optim.SGD([logits], lr=5.0)
    for _ in range(300):
        optimizer.zero_grad()
        DistributionFocalLoss(loss_weight=1.0)(logits, target).backward()
        optimizer.step()
    probs = logits.detach().softmax(-1)
    torch.testing.assert_close((probs * torch.arange(16.0)).sum(-1), target, atol=0.05, rtol=0)
    assert probs[0, 1, 3:5].sum() > 0.9  # concentrated on the two neighbours of 3.3
