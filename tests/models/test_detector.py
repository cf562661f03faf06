from functools import partial

import torch

from framework.models import Detector
from framework.models.backbones import ResNet
from framework.models.heads import RetinaHead
from framework.models.losses import GIoULoss, L1Loss, SmoothL1Loss
from framework.models.necks import FPN


def tiny_detector(box_loss=None, num_classes=3) -> Detector:
    return Detector(
        ResNet(depth=18),
        partial(FPN, out_channels=32, num_outs=5),
        partial(RetinaHead, num_classes=num_classes, feat_channels=32, stacked_convs=1, norm="gn",
                box_loss=box_loss or L1Loss()),
    )


def targets():
    return [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0], [30.0, 30.0, 60.0, 62.0]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def test_detector_wires_shapes_from_backbone_to_head():
    det = tiny_detector()
    assert det.neck.fpn.inner_blocks[0][0].in_channels == 128  # ResNet-18 C3
    assert det.head.cls_tower[0].in_channels == 32
    assert det.head.anchor_generator.strides == [8, 16, 32, 64, 128]


def test_train_forward_backward_each_box_loss():
    for loss in (L1Loss(), SmoothL1Loss(), GIoULoss()):
        det = tiny_detector(loss).train()
        losses = det(torch.randn(2, 3, 64, 64), targets())
        assert set(losses) == {"loss_cls", "loss_box"}
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert det.backbone.stem[0].weight.grad is not None
        assert det.head.box_out.weight.grad.abs().sum() > 0


def test_eval_returns_detections_in_original_pixels():
    det = tiny_detector().eval()
    det.head.postprocess.score_thr = 0.0  # untrained: accept everything so there is something to check
    out = det(torch.randn(2, 3, 64, 96), image_sizes=[(64, 96), (48, 64)], orig_sizes=[(128, 192), (48, 64)])
    assert len(out) == 2
    for d, (h, w) in zip(out, [(128, 192), (48, 64)]):
        assert d["boxes"].shape[1] == 4 and len(d["boxes"]) == len(d["scores"]) == len(d["labels"])
        assert 0 < len(d["boxes"]) <= det.head.postprocess.max_per_img
        assert d["boxes"][:, 0::2].max() <= w and d["boxes"][:, 1::2].max() <= h and d["boxes"].min() >= 0
        assert d["labels"].max() < 3
        assert torch.all(d["scores"][:-1] >= d["scores"][1:])
