"""YOLOHead: shapes and widths, losses (empty and non-empty targets, every box-loss kind, DFL and softplus heads), the
frozen DFL projection, prediction contract, and a trainer-based convergence check of a small `yolo_cspdarknet_s`-style
detector on a few shapes images."""
from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from framework.models import Detector
from framework.models.backbones.cspdarknet import CSPDarknet
from framework.models.heads.yolo import YOLOHead
from framework.engine.ema import ModelEMA
from framework.engine.optim import param_groups
from tests.engine.test_overfit import overfit
from framework.models.losses import (
    BCEWithLogitsLoss, CIoULoss, CrossEntropyLoss, DistributionFocalLoss, GIoULoss, L1Loss, SmoothL1Loss,
    VarifocalLoss,
)
from framework.models.necks import PAN
from framework.models.ops.targets import pad_targets


def tiny_yolo(num_classes: int = 3, **head_kwargs) -> Detector:
    return Detector(CSPDarknet(size="n"), partial(PAN), partial(YOLOHead, num_classes=num_classes, **head_kwargs))


def targets():
    return [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0], [30.0, 30.0, 60.0, 62.0]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def test_decoupled_branches_per_level_and_output_shapes():
    head = YOLOHead(num_classes=5, in_channels=[64, 128, 256], strides=[8, 16, 32])
    assert len(head.cls_branches) == len(head.box_branches) == 3
    assert head.cls_branches[2][0].conv.in_channels == 256
    # YOLOv8's widths from the finest level: cls max(64, min(5, 100)) = 64, box max(16, 64 // 4, 4 x 16) = 64
    assert head.cls_branches[0][-1].in_channels == 64 and head.box_branches[0][-1].in_channels == 64
    assert head.box_branches[0][-1].out_channels == 4 * 16  # 16 bins per side
    feats = [torch.randn(2, c, 64 // s, 96 // s) for c, s in [(64, 8), (128, 16), (256, 32)]]
    cls, box_out, sizes = head(feats)
    points = sum(h * w for h, w in sizes)
    assert sizes == [(8, 12), (4, 6), (2, 3)] and cls.shape == (2, points, 5) and box_out.shape == (2, points, 64)
    dist = head.distances(box_out)
    assert dist.shape == (2, points, 4) and (dist >= 0).all() and (dist <= 15).all()  # expectations over 0..15
    softplus = YOLOHead(num_classes=5, in_channels=[64, 128, 256], strides=[8, 16, 32], reg_max=None)
    assert softplus.box_branches[0][-1].out_channels == 4 and softplus.box_branches[0][-1].in_channels == 64
    assert (softplus.distances(softplus(feats)[1]) > 0).all()  # softplus distances
    shared = YOLOHead(num_classes=5, in_channels=32, strides=[8, 16, 32, 64], feat_channels=16, stacked_convs=1)
    assert len(shared.cls_branches) == 4 and shared.cls_branches[0][0].conv.out_channels == 16
    with pytest.raises(ValueError, match="in_channels"):
        YOLOHead(num_classes=5, in_channels=[64, 128], strides=[8, 16, 32])
    with pytest.raises(ValueError, match="reg_max"):
        YOLOHead(num_classes=5, reg_max=1)


def test_branch_widths_follow_yolov8():
    """box: max(16, c // 4, 4 x reg_max); cls: max(c, min(num_classes, 100)); c is the finest level's width."""
    with torch.device("meta"):
        wide = YOLOHead(num_classes=80, in_channels=[320, 640, 640], strides=[8, 16, 32])  # YOLOv8-x
        many = YOLOHead(num_classes=300, in_channels=[64, 128, 256], strides=[8, 16, 32])
        few_bins = YOLOHead(num_classes=3, in_channels=[32, 64, 128], strides=[8, 16, 32], reg_max=8)
    assert wide.box_branches[0][0].conv.out_channels == 80 and wide.cls_branches[0][0].conv.out_channels == 320
    assert many.cls_branches[0][0].conv.out_channels == 100 and many.box_branches[0][0].conv.out_channels == 64
    assert few_bins.box_branches[0][0].conv.out_channels == 32 and few_bins.box_branches[0][-1].out_channels == 32
    assert few_bins.cls_branches[0][0].conv.out_channels == 32


@pytest.mark.parametrize("reg_max", [16, None], ids=["dfl", "softplus"])
def test_init_distance_starts_every_side_near_it(reg_max):
    head = YOLOHead(num_classes=3, in_channels=[16, 32], strides=[8, 16], stacked_convs=0, reg_max=reg_max,
                    init_distance=1.0)
    with torch.no_grad():
        for branch in head.box_branches:
            branch[-1].weight.zero_()  # the biases alone
        dist = head.distances(head([torch.randn(1, 16, 4, 4), torch.randn(1, 32, 2, 2)])[1])
    # softplus: exactly 1; DFL: bins weighted exp(-|k - 1|), whose tail puts the mean at 1.28
    torch.testing.assert_close(dist, torch.full_like(dist, 1.28 if reg_max else 1.0), atol=0.01, rtol=0)
    assert head.assigner.iou == "ciou"  # YOLOv8's alignment by default
    with pytest.raises(ValueError, match="init_distance"):
        YOLOHead(num_classes=3, init_distance=15.0)


def test_bias_init_follows_yolov8():
    head = YOLOHead(num_classes=4, in_channels=[32, 64, 128], strides=[8, 16, 32])
    for branch, stride in zip(head.cls_branches, (8, 16, 32)):
        prior = 5 / 4 / (640 / stride) ** 2  # five objects per class in a 640x640 image
        torch.testing.assert_close(branch[-1].bias, torch.full((4,), math.log(prior)))
    assert (head.box_branches[0][-1].bias == 1.0).all()
    fixed = YOLOHead(num_classes=4, in_channels=32, strides=[8], prior_prob=0.01)
    torch.testing.assert_close(fixed.cls_branches[0][-1].bias, torch.full((4,), math.log(0.01 / 0.99)))


@pytest.mark.parametrize("reg_max", [16, None], ids=["dfl", "softplus"])
@pytest.mark.parametrize("box_loss", [CIoULoss(), GIoULoss(), L1Loss(), SmoothL1Loss()], ids=type)
def test_loss_finite_and_gradients_reach_the_backbone(box_loss, reg_max):
    torch.manual_seed(0)
    det = tiny_yolo(box_loss=box_loss, reg_max=reg_max).train()
    losses = det(torch.randn(2, 3, 64, 64), targets())
    assert set(losses) == ({"loss_cls", "loss_box", "loss_dfl"} if reg_max else {"loss_cls", "loss_box"})
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_box"] > 0
    sum(losses.values()).backward()
    assert det.backbone.stem.conv.weight.grad.abs().sum() > 0
    assert all(b[-1].weight.grad.abs().sum() > 0 for b in det.head.box_branches[:1])


def test_dfl_loss_is_the_positives_distribution_loss():
    """loss_dfl = DistributionFocalLoss(bins of each positive, its target distances in strides, its target score)
    / target-score sum, with the gain 1.5 by default."""
    torch.manual_seed(0)
    head = YOLOHead(num_classes=2, in_channels=8, strides=[8], stacked_convs=0)
    assert isinstance(head.dfl_loss, DistributionFocalLoss) and head.dfl_loss.loss_weight == 1.5
    feat = torch.randn(1, 8, 8, 8)
    one = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}]
    losses = head.loss([feat], one)
    cls_logits, box_out, sizes = head([feat])
    points, strides = head.point_generator.grid_points(sizes, feat.device)
    boxes = head.box_coder.decode(head.distances(box_out), points, strides)
    gt, labels, valid = pad_targets(one, feat.device)
    assigned = head.assigner.assign(cls_logits.sigmoid(), boxes, points, gt, labels, valid)
    fg, scores = assigned.fg_mask[0], assigned.scores[0]
    target = head.box_coder.encode(assigned.boxes[0][fg], points[fg], strides[fg])
    expected = DistributionFocalLoss()(box_out[0][fg].view(-1, 4, 16), target, scores.sum(-1)[fg])
    torch.testing.assert_close(losses["loss_dfl"], expected / scores.sum().clamp(min=1))
    assert fg.sum() > 1 and losses["loss_dfl"] > 0


def test_dfl_projection_is_frozen_and_saved():
    """The 16 bin values count as parameters (as in ultralytics) but never train: the optimizer skips them, an EMA
    keeps them, checkpoints carry them; softplus weights loaded into a DFL head say which reg_max they need."""
    det = tiny_yolo()
    proj = det.head.dfl_proj
    assert not proj.requires_grad and torch.equal(proj, torch.arange(16.0))
    groups = param_groups(det, lr=0.01, weight_decay=1e-4)
    assert all(p is not proj for g in groups for p in g["params"])
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in det.parameters()) - 16
    ema = ModelEMA(det, decay=0.5, tau=1.0)
    with torch.no_grad():
        det.head.cls_branches[0][-1].bias.add_(1.0)
    ema.update(det)
    assert torch.equal(ema.module.head.dfl_proj, torch.arange(16.0))
    fresh = tiny_yolo()
    fresh.head.dfl_proj.data.zero_()
    fresh.load_state_dict(det.state_dict())
    assert torch.equal(fresh.head.dfl_proj, torch.arange(16.0)) and not fresh.head.dfl_proj.requires_grad
    with pytest.raises(RuntimeError, match=r"reg_max=null \(softplus"):
        fresh.load_state_dict(tiny_yolo(reg_max=None).state_dict())
    with pytest.raises(RuntimeError, match="reg_max=16"):
        tiny_yolo(reg_max=None).load_state_dict(det.state_dict())


def test_loss_without_any_ground_truth():
    det = tiny_yolo().train()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    losses = det(torch.randn(2, 3, 64, 64), empty)
    assert losses["loss_box"] == 0 and torch.isfinite(losses["loss_cls"]) and losses["loss_cls"] > 0
    sum(losses.values()).backward()  # still a graph: every point is pushed towards background
    assert det.head.cls_branches[0][-1].weight.grad.abs().sum() > 0


def test_label_smoothing_and_varifocal_cls_losses():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    for cls_loss in (BCEWithLogitsLoss(label_smoothing=0.1), VarifocalLoss()):
        losses = tiny_yolo(cls_loss=cls_loss).train()(x, targets())
        assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="sigmoid classification loss"):
        YOLOHead(num_classes=3, cls_loss=CrossEntropyLoss())
    with pytest.raises(ValueError, match="box loss"):
        YOLOHead(num_classes=3, box_loss=BCEWithLogitsLoss())


@pytest.mark.parametrize("reg_max", [16, None], ids=["dfl", "softplus"])
def test_loss_is_normalized_by_the_target_score_sum(reg_max):
    torch.manual_seed(0)
    head = YOLOHead(num_classes=2, in_channels=8, strides=[8], stacked_convs=0, box_loss=L1Loss(), reg_max=reg_max)
    with torch.no_grad():  # boxes of about 2 strides per side, near the target's, so the scores sum above 1
        last = head.box_branches[0][-1]
        last.weight.mul_(0.01)
        last.bias.copy_(-5 * (torch.arange(16.0) - 2).abs().repeat(4) if reg_max else torch.full((4,), 1.85))
    feat = torch.randn(1, 8, 8, 8)
    one = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}]
    single = head.loss([feat], one)
    # the same image twice: sums double, and so does the normalizer, so the losses do not change
    double = head.loss([torch.cat([feat, feat])], one * 2)
    for k in single:
        torch.testing.assert_close(double[k], single[k])


def test_predict_fields_shapes_and_boxes_inside_the_image():
    torch.manual_seed(0)
    det = tiny_yolo().eval()
    det.head.postprocess.score_thr = 0.0  # untrained: accept everything so there is something to check
    out = det(torch.randn(2, 3, 64, 96), image_sizes=[(64, 96), (48, 64)], orig_sizes=[(128, 192), (48, 64)])
    assert len(out) == 2
    for d, (h, w) in zip(out, [(128, 192), (48, 64)]):
        assert set(d) == {"boxes", "scores", "labels"}
        assert d["boxes"].shape[1] == 4 and len(d["boxes"]) == len(d["scores"]) == len(d["labels"])
        assert 0 < len(d["boxes"]) <= det.head.postprocess.max_per_img
        assert d["boxes"][:, 0::2].max() <= w and d["boxes"][:, 1::2].max() <= h and d["boxes"].min() >= 0
        assert d["labels"].dtype == torch.int64 and d["labels"].max() < 3
        assert torch.all(d["scores"][:-1] >= d["scores"][1:])
    head = det.head
    assert (head.postprocess.score_thr, head.postprocess.nms_iou_thr, head.postprocess.max_per_img) == (0.0, 0.7, 300)


@pytest.mark.slow
def test_yolo_overfits_a_few_images(shapes_root, tmp_path):
    """The yolo_cspdarknet_s layout (CSPDarknet-v8 + C2f PAN + YOLOv8's DFL head) at n width, trained by the
    Trainer. Its boxes start at one stride per side (`init_distance=1.0`): from YOLOv8's equal bins (7.5 strides)
    the 13-18 px shapes are never found in a short run (mAP@.5 0.81 at 18 epochs, 0.70 at 30; 1.0 from here)."""
    torch.manual_seed(0)
    model = Detector(CSPDarknet(arch="v8", size="n"), partial(PAN, block="c2f", depth=1),
                     partial(YOLOHead, num_classes=4, init_distance=1.0))
    # AdamW, as ultralytics' optimizer="auto" picks for short runs; SGD needs far more iterations here
    adamw = partial(torch.optim.AdamW, lr=0.002, weight_decay=1e-4)
    metrics, summary = overfit(shapes_root, tmp_path, model, adamw, epochs=8, milestone=6)  # 1.0 at seeds 0 and 1
    assert metrics["bbox/mAP_50"] >= 0.9, summary
