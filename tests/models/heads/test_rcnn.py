from functools import partial

import torch

from framework.models import Detector
from framework.models.backbones import ResNet
from framework.models.heads import FasterRCNNHead, RoIBoxHead, RPNHead
from framework.models.losses import CrossEntropyLoss, GIoULoss
from framework.models.necks import FPN

TARGETS = [
    {"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0], [30.0, 30.0, 60.0, 62.0]]), "labels": torch.tensor([0, 2])},
    {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
]


def detector(**kw) -> Detector:
    torch.manual_seed(0)
    return Detector(ResNet(depth=18, out_indices=(1, 2, 3, 4)), partial(FPN, out_channels=32, num_outs=5),
                    partial(FasterRCNNHead, num_classes=3, **kw))


def test_two_stage_losses_and_gradients():
    det = detector(roi=partial(RoIBoxHead, representation_size=64, num_samples=64),
                   cls_loss=CrossEntropyLoss(label_smoothing=0.1), box_loss=GIoULoss()).train()
    losses = det(torch.randn(2, 3, 64, 96), TARGETS, image_sizes=[(64, 96), (48, 64)])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_box"] > 0
    sum(losses.values()).backward()
    assert det.backbone.stem[0].weight.grad.abs().sum() > 0
    assert det.head.rpn.cls_out.weight.grad.abs().sum() > 0 and det.head.roi.fc6.weight.grad.abs().sum() > 0


def test_proposals_stay_inside_each_image_and_are_capped():
    det = detector(rpn=partial(RPNHead, post_nms_test=50)).eval()
    feats = det.extract_features(torch.randn(2, 3, 64, 96))
    obj, deltas, sizes = det.head.rpn(feats)
    anchors = det.head.rpn.anchor_generator.grid_anchors(sizes, obj.device)
    props = det.head.rpn.proposals(obj, deltas, anchors, sizes, [(64, 96), (40, 50)])
    assert 0 < len(props[1]) <= 50
    assert props[1][:, 0::2].max() <= 50 and props[1][:, 1::2].max() <= 40 and props[1].min() >= 0


def test_predict_maps_labels_to_foreground_classes():
    det = detector().eval()
    det.head.roi.postprocess.score_thr = 0.0
    out = det(torch.randn(1, 3, 64, 96), image_sizes=[(64, 96)], orig_sizes=[(128, 192)])[0]
    assert len(out["boxes"]) > 0 and out["labels"].max() < 3 and out["labels"].min() >= 0
    assert out["boxes"][:, 0::2].max() <= 192 and out["boxes"][:, 1::2].max() <= 128
    assert det.num_classes == 3 and det.head.roi.cls_out.out_features == 4  # background slot 0
