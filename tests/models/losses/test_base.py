"""`SigmoidLoss.forward_labels` (one-hot targets given as labels) equals `forward` on the dense targets, in value
and gradient, for every sigmoid loss we ship."""
from __future__ import annotations

import pytest
import torch

from framework.models.losses import BCEWithLogitsLoss, FocalLoss, VarifocalLoss, check_loss


def case(seed: int, shape=(2, 300, 7), positives: int = 40):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g) * 3 - 2
    labels = torch.full(shape[:-1], -1, dtype=torch.long)
    rows = torch.randperm(labels.numel(), generator=g)[:positives]
    labels.view(-1)[rows] = torch.randint(0, shape[-1], (positives,), generator=g)
    weight = (torch.rand(shape[:-1], generator=g) > 0.1).float()
    values = torch.rand(positives, generator=g)  # IoU-like soft targets for the positives, in `labels >= 0` order
    return logits, labels, weight, values


def dense(logits: torch.Tensor, labels: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor:
    targets = torch.zeros_like(logits)
    pos = labels >= 0
    targets[pos, labels[pos]] = 1.0 if values is None else values
    return targets


def value_and_grad(fn, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.clone().requires_grad_()
    out = fn(x)
    out.backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("loss", [FocalLoss(), FocalLoss(alpha=-1, gamma=1.5), FocalLoss(loss_weight=2.0),
                                  VarifocalLoss(), BCEWithLogitsLoss(), BCEWithLogitsLoss(label_smoothing=0.1)],
                         ids=["focal", "focal-no-alpha", "focal-weighted", "varifocal", "bce", "bce-smoothed"])
@pytest.mark.parametrize("soft", [False, True], ids=["one-hot", "soft"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_forward_labels_equals_dense_forward(loss, soft, weighted):
    logits, labels, weight, values = case(seed=3)
    values = values if soft else None
    weight = weight if weighted else None
    dense_w = None if weight is None else weight[..., None]
    expected, expected_grad = value_and_grad(lambda x: loss(x, dense(x, labels, values), dense_w), logits)
    got, got_grad = value_and_grad(lambda x: loss.forward_labels(x, labels, values, weight), logits)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_forward_labels_without_positives_is_the_all_negative_loss():
    logits, _, _, _ = case(seed=5)
    labels = torch.full(logits.shape[:-1], -1, dtype=torch.long)
    loss = FocalLoss()
    torch.testing.assert_close(loss.forward_labels(logits, labels), loss(logits, torch.zeros_like(logits)))


def test_check_loss_names_the_base_class_for_custom_sigmoid_losses():
    class Custom(torch.nn.Module):
        use_sigmoid = True

    with pytest.raises(ValueError, match="SigmoidLoss"):
        check_loss(Custom(), "cls_loss", "RetinaHead", use_sigmoid=True)


def test_a_subclass_overriding_forward_is_called_with_dense_targets():
    class Counted(FocalLoss):
        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, logits, targets, weight=None):
            self.seen.append(targets.shape)
            return super().forward(logits, targets, weight)

    logits, labels, weight, _ = case(seed=7)
    loss = Counted()
    got = loss.forward_labels(logits, labels, weight=weight)
    assert loss.seen == [logits.shape]
    torch.testing.assert_close(got, FocalLoss().forward_labels(logits, labels, weight=weight), rtol=1e-5, atol=1e-4)
