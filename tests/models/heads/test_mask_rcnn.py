"""Mask R-CNN's mask stage on a tiny model (ResNet-18, 32-channel FPN, small images, 3 classes): losses and
gradients, masks at the original size, empty cases, the mask_loss switch, the mask targets against torchvision's,
and an overfit of the mask stage on one synthetic image (trained targets and pasted masks agree in place)."""
from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from torchvision.models.detection.roi_heads import maskrcnn_loss, project_masks_on_boxes

from framework.config.cli import check_overrides
from framework.models import Detector
from framework.models.backbones import ResNet
from framework.models.convert_torchvision import convert_key
from framework.models.heads import MaskRCNNHead, RoIBoxHead, RoIMaskHead
from framework.models.heads.roi import RoISamples
from framework.models.losses import BCEDiceLoss, DiceLoss, MaskBCELoss, SmoothL1Loss
from framework.models.necks import FPN
from framework.models.ops.masks import mask_targets, paste_masks


def box_mask(h: int, w: int, box: list[int]) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.uint8)
    m[box[1]:box[3], box[0]:box[2]] = 1
    return m


def disc(h: int, w: int, cx: float, cy: float, r: float) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return (((x - cx) ** 2 + (y - cy) ** 2) <= r * r).to(torch.uint8)


def targets() -> list[dict]:
    """Image 0 (64×96): two instances; image 1 (48×64): none."""
    masks = torch.stack([box_mask(64, 96, [4, 6, 40, 30]), disc(64, 96, 45, 46, 15)])
    return [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0], [30.0, 31.0, 60.0, 61.0]]), "labels": torch.tensor([0, 2]),
             "masks": masks},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
             "masks": torch.zeros(0, 48, 64, dtype=torch.uint8)}]


def detector(**kw) -> Detector:
    torch.manual_seed(0)
    head = partial(MaskRCNNHead, num_classes=3, roi=partial(RoIBoxHead, representation_size=64, num_samples=64),
                   mask=partial(RoIMaskHead, conv_channels=(32, 32)), **kw)
    return Detector(ResNet(depth=18, out_indices=(1, 2, 3, 4)), partial(FPN, out_channels=32, num_outs=5), head)


@pytest.fixture(scope="module")
def model() -> Detector:
    return detector()


def test_losses_are_finite_and_reach_the_backbone(model):
    model.train().zero_grad()
    losses = model(torch.randn(2, 3, 64, 96), targets(), image_sizes=[(64, 96), (48, 64)])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_mask"] > 0
    losses["loss_mask"].backward()
    assert model.head.mask.logits.weight.grad.abs().sum() > 0 and model.head.mask.convs[0].weight.grad.abs().sum() > 0
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0
    assert model.needs_masks and MaskRCNNHead.needs_masks


def test_batch_without_ground_truth_gives_a_zero_mask_loss_with_a_graph(model):
    model.train().zero_grad()
    empty = [targets()[1], targets()[1]]
    losses = model(torch.randn(2, 3, 48, 64), empty, image_sizes=[(48, 64), (48, 64)])
    assert losses["loss_mask"] == 0 and losses["loss_mask"].requires_grad
    sum(losses.values()).backward()


def test_missing_masks_are_refused_with_the_fix(model):
    plain = [{k: v for k, v in t.items() if k != "masks"} for t in targets()]
    with pytest.raises(ValueError, match="with_masks=True"):
        model.train()(torch.randn(2, 3, 64, 96), plain, image_sizes=[(64, 96), (48, 64)])


def test_eval_gives_bool_masks_at_the_original_size(model):
    model.eval()
    model.head.roi.postprocess.score_thr = 0.0
    try:
        out = model(torch.randn(2, 3, 64, 96), image_sizes=[(64, 96), (48, 64)], orig_sizes=[(128, 192), (40, 50)])
        plain = model(torch.randn(1, 3, 64, 96), image_sizes=[(64, 96)])[0]
    finally:
        model.head.roi.postprocess.score_thr = 0.05
    for det, (h, w) in zip(out, [(128, 192), (40, 50)]):
        assert len(det["boxes"]) > 0 and det["masks"].dtype == torch.bool
        assert det["masks"].shape == (len(det["boxes"]), h, w)
        assert det["boxes"][:, 0::2].max() <= w and det["boxes"][:, 1::2].max() <= h
    assert plain["masks"].shape[-2:] == (64, 96)  # no orig_sizes: the input size


def test_empty_detections_give_empty_masks(model):
    model.eval()
    model.head.roi.postprocess.score_thr = 1.0
    try:
        out = model(torch.randn(2, 3, 64, 96), image_sizes=[(64, 96), (48, 64)], orig_sizes=[(128, 192), (40, 50)])
    finally:
        model.head.roi.postprocess.score_thr = 0.05
    assert [tuple(d["masks"].shape) for d in out] == [(0, 128, 192), (0, 40, 50)]
    assert all(d["masks"].dtype == torch.bool for d in out)


@pytest.mark.parametrize("option,loss", [("bce", MaskBCELoss), ("dice", DiceLoss), ("bce_dice", BCEDiceLoss)])
def test_mask_loss_switch(option, loss):
    cfg = check_overrides("train", ["model=mask_rcnn_r50_fpn", "model/backbone=resnet18", "model.neck.out_channels=32",
                                    f"model/head/mask_loss={option}", "dataset.num_classes=3"])
    assert cfg.model.head.mask.output_size == 14 and cfg.model.head.roi.output_size == 7
    model = instantiate(cfg.model)
    assert type(model.head.mask.mask_loss) is loss and model.needs_masks
    if option == "dice":
        model.train()
        losses = model(torch.randn(2, 3, 64, 96), targets(), image_sizes=[(64, 96), (48, 64)])
        assert 0 < losses["loss_mask"] < 1  # soft Dice per instance is below 1, and so is its mean


def test_a_box_loss_as_mask_loss_is_refused():
    with pytest.raises(ValueError, match="mask_loss must be a mask loss"):
        RoIMaskHead(num_classes=3, mask_loss=SmoothL1Loss())


def test_mask_targets_are_torchvisions():
    t = targets()[0]
    rois = torch.tensor([[2.0, 4.0, 38.0, 33.0], [31.5, 29.0, 61.0, 60.2], [5.0, 5.0, 41.0, 31.0]])
    matched = torch.tensor([0, 1, 0])
    got = mask_targets([t["masks"]], rois, torch.zeros(3, dtype=torch.long), matched, 28)
    torch.testing.assert_close(got, project_masks_on_boxes(t["masks"], rois, matched, 28))
    # the RoIs of several images, in image order; an image without RoIs is skipped
    two = mask_targets([t["masks"], torch.zeros(0, 8, 8), t["masks"].flip(-1)], torch.cat([rois, rois[:1]]),
                       torch.tensor([0, 0, 0, 2]), torch.tensor([0, 1, 0, 1]), 28)
    torch.testing.assert_close(two[:3], got)
    torch.testing.assert_close(two[3], project_masks_on_boxes(t["masks"].flip(-1), rois[:1], matched[1:2], 28)[0])


def test_mask_loss_is_torchvisions(model):
    """On the same positives, the default loss is torchvision's `maskrcnn_loss` (mean BCE over their pixels)."""
    t = targets()[0]
    feats = [f.detach() for f in model.eval().extract_features(torch.randn(1, 3, 64, 96))]
    rois = torch.tensor([[2.0, 4.0, 38.0, 33.0], [31.5, 29.0, 61.0, 60.2], [5.0, 5.0, 41.0, 31.0]])
    matched = torch.tensor([0, 1, 0])
    samples = RoISamples(rois=rois, counts=[3], image_of=torch.zeros(3, dtype=torch.long),
                         labels=t["labels"][matched] + 1, matched=matched, is_pos=torch.ones(3, dtype=torch.bool),
                         matched_boxes=t["boxes"][matched])
    ours = model.head.mask.loss(feats, samples, [t])["loss_mask"]
    expected = maskrcnn_loss(model.head.mask(feats, [rois]), [rois], [t["masks"]], [t["labels"] + 1], [matched])
    torch.testing.assert_close(ours, expected)


def test_paste_masks_fills_the_box():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 0.0, 0.0]])
    masks = paste_masks(torch.ones(2, 28, 28), boxes, (48, 64))
    assert masks.shape == (2, 48, 64) and masks.dtype == torch.bool
    grown = torch.zeros(48, 64, dtype=torch.bool)
    grown[19:42, 9:52] = True  # torchvision's pasting counts the far edge in (x2 - x1 + 1 pixels wide)
    assert masks[0, 20:40, 10:50].all() and not (masks[0] & ~grown).any() and not masks[1, 2:].any()


def test_converter_maps_both_torchvision_mask_head_layouts():
    assert convert_key("roi_heads.mask_head.3.0.weight", "mask_rcnn") == "head.mask.convs.6.weight"
    assert convert_key("roi_heads.mask_head.mask_fcn4.bias", "mask_rcnn") == "head.mask.convs.6.bias"
    assert convert_key("roi_heads.mask_predictor.conv5_mask.weight", "mask_rcnn") == "head.mask.deconv.weight"
    assert convert_key("roi_heads.mask_predictor.mask_fcn_logits.bias", "mask_rcnn") == "head.mask.logits.bias"
    assert convert_key("roi_heads.box_head.fc6.weight", "mask_rcnn") == "head.roi.fc6.weight"


def test_mask_stage_overfits_one_image_and_pastes_in_place(model):
    """Train only the mask stage on fixed features and the ground-truth boxes (plus shifted copies), then predict
    masks for the ground-truth boxes: they must cover the ground truth (a rectangle and a disc), which holds only
    if the 28×28 targets and the pasting agree about where the RoI lies."""
    model.eval()
    t = targets()[0]
    image = torch.zeros(1, 3, 64, 96)
    image[0, :, t["masks"].bool().any(0)] = 2.0
    with torch.no_grad():
        feats = [f.detach() for f in model.extract_features(image)]
    gt = t["boxes"]
    rois = torch.cat([gt, gt + 2.0, gt - 2.0])
    samples = RoISamples(rois=rois, counts=[6], image_of=torch.zeros(6, dtype=torch.long),
                         labels=(t["labels"] + 1).repeat(3), matched=torch.arange(2).repeat(3),
                         is_pos=torch.ones(6, dtype=torch.bool), matched_boxes=gt.repeat(3, 1))
    head = model.head.mask
    state = {k: v.clone() for k, v in head.state_dict().items()}
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    try:
        head.train()
        for _ in range(60):
            opt.zero_grad()
            loss = head.loss(feats, samples, [t])["loss_mask"]
            loss.backward()
            opt.step()
        head.eval()
        dets = [{"boxes": gt.clone(), "labels": t["labels"], "scores": torch.ones(2)}]
        masks = head.predict(feats, dets, [(64, 96)], [(128, 192)])[0]["masks"]
    finally:
        head.load_state_dict(state)
    assert loss < 0.2
    truth = torch.nn.functional.interpolate(t["masks"][None].float(), scale_factor=2)[0].bool()
    iou = (masks & truth).flatten(1).sum(1) / (masks | truth).flatten(1).sum(1)
    assert (iou > 0.85).all(), iou
