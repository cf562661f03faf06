from functools import partial

import pytest
import torch

from framework.models import Detector
from framework.models.backbones import ResNet
from framework.models.heads import FCOSHead
from framework.models.losses import CIoULoss, L1Loss, VarifocalLoss
from framework.models.necks import FPN

TARGETS = [
    {"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0], [30.0, 30.0, 60.0, 62.0]]), "labels": torch.tensor([0, 2])},
    {"boxes": torch.tensor([[10.0, 8.0, 50.0, 40.0]]), "labels": torch.tensor([1])},
]


def head(**kw) -> FCOSHead:
    torch.manual_seed(0)
    return FCOSHead(num_classes=3, in_channels=16, strides=(8, 16, 32), feat_channels=16, stacked_convs=1, **kw)


def feats(batch=2):
    torch.manual_seed(1)
    return [torch.randn(batch, 16, 8, 12), torch.randn(batch, 16, 4, 6), torch.randn(batch, 16, 2, 3)]


def test_batched_loss_equals_the_per_image_losses_combined():
    """The loss is computed for the whole batch at once; summed per image and normalized by the batch's positives,
    it must equal the per-image losses weighted by their own positives."""
    h, f = head(), feats()
    whole = h.loss(f, TARGETS)
    parts = [h.loss([x[i:i + 1] for x in f], [TARGETS[i]]) for i in range(2)]
    points, strides = h.points.grid_points([(8, 12), (4, 6), (2, 3)], torch.device("cpu"))
    from framework.models.ops.targets import pad_targets
    npos = []
    for t in TARGETS:
        g, _, v = pad_targets([t], torch.device("cpu"))
        npos.append(int((h.assigner.assign(points, strides, h._point_ranges([(8, 12), (4, 6), (2, 3)], torch.device("cpu")), g, v) >= 0).sum()))
    assert all(n > 0 for n in npos)
    for key in ("loss_cls", "loss_box", "loss_centerness"):
        combined = sum(p[key] * n for p, n in zip(parts, npos)) / sum(npos)
        torch.testing.assert_close(whole[key], combined, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"cls_loss": VarifocalLoss(), "box_loss": L1Loss()},
                                {"box_loss": CIoULoss(), "learnable_scales": True, "centerness_weighted_box": True}])
def test_losses_are_finite_and_reach_the_backbone(kw):
    det = Detector(ResNet(depth=18), partial(FPN, out_channels=32, num_outs=5, extra_from="p5"),
                   partial(FCOSHead, num_classes=3, feat_channels=32, stacked_convs=1, **kw)).train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    losses = det(torch.randn(2, 3, 64, 96), [TARGETS[0], empty])
    assert set(losses) == {"loss_cls", "loss_box", "loss_centerness"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert det.backbone.stem[0].weight.grad.abs().sum() > 0
    if kw.get("learnable_scales"):
        assert det.head.scales.grad is not None


def test_predict_scores_are_sqrt_of_cls_times_centerness_and_boxes_stay_in_the_image():
    h = head(score_thr=0.0)
    f = feats(1)
    out = h.predict(f, image_sizes=[(60, 90)])[0]
    cls, dist, ctr, _ = h(f)
    best = torch.sqrt(cls.sigmoid() * ctr.sigmoid()[..., None]).max()
    torch.testing.assert_close(out["scores"][0], best)
    assert out["boxes"][:, 0::2].max() <= 90 and out["boxes"][:, 1::2].max() <= 60 and out["boxes"].min() >= 0
    assert len(out["boxes"]) <= 100 and out["labels"].max() < 3
