"""YOLOSegHead: YOLOv8-seg's layout and parameter count, the mask loss (hand-computed: only inside each gt box, a mean
over the box, averaged over positives), gradients to the prototype branch, empty ground truth, masks at the original
size, the pasting of prototype masks, and a short overfit of one synthetic image with two shapes."""
from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes

from framework.models import Detector
from framework.models.backbones.cspdarknet import CSPDarknet
from framework.models.heads import YOLOHead, YOLOSegHead
from framework.models.heads.yolo_seg import paste_prototype_masks
from framework.models.losses import DiceLoss, MaskBCELoss
from framework.models.necks import PAN
from framework.models.ops.dynamic_assigners import DynamicAssignment


def tiny_seg(num_classes: int = 3, **head_kwargs) -> Detector:
    """CSPDarknet at 1/8 width (8 … 128 channels) + PAN: a YOLO-seg of ~1M parameters."""
    return Detector(CSPDarknet(deepen_factor=0.33, widen_factor=0.125), partial(PAN),
                    partial(YOLOSegHead, num_classes=num_classes, **head_kwargs))


def synthetic(size: int = 64) -> tuple[torch.Tensor, dict]:
    """A normalized image with a red disk (label 0) and a blue L-shape (label 1), their exact masks and boxes."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    disk = (yy - 40) ** 2 + (xx - 22) ** 2 <= 14 ** 2
    ell = (yy >= 8) & (yy < 28) & (xx >= 30) & (xx < 58) & ~((yy >= 18) & (xx >= 44))  # not its box
    masks = torch.stack([disk, ell]).to(torch.uint8)
    image = torch.full((3, size, size), 0.5)
    image[:, disk] = torch.tensor([0.9, 0.2, 0.2])[:, None]
    image[:, ell] = torch.tensor([0.2, 0.3, 0.9])[:, None]
    boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # pixel edges, not centres
    return (image - 0.5) / 0.25, {"boxes": boxes, "labels": torch.tensor([0, 1]), "masks": masks}


def two_images() -> list[dict]:
    _, target = synthetic()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
             "masks": torch.zeros(0, 48, 64, dtype=torch.uint8)}
    return [target, empty]


def test_layout_and_parameters_match_yolov8_seg():
    """With 80 classes the s model has ultralytics' yolov8s-seg count (11,821,056; n: 3,409,968): the detector's
    11,166,560 plus the prototype module (128 → 128 → ×2 → 128 → 32) and three coefficient branches of width 32."""
    with torch.device("meta"):
        seg = Detector(CSPDarknet(size="s"), partial(PAN, block="c2f"), partial(YOLOSegHead, num_classes=80))
        box = Detector(CSPDarknet(size="s"), partial(PAN, block="c2f"), partial(YOLOHead, num_classes=80))
        nano = Detector(CSPDarknet(size="n"), partial(PAN, block="c2f"), partial(YOLOSegHead, num_classes=80))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(seg), count(box), count(nano)) == (11_821_056, 11_166_560, 3_409_968)
    head = seg.head
    assert YOLOSegHead.needs_masks and seg.needs_masks and not box.needs_masks
    assert head.proto.conv1.conv.in_channels == 128 and head.proto.conv3.conv.out_channels == 32
    assert head.coef_branches[2][0].conv.in_channels == 512 and head.coef_branches[0][-1].out_channels == 32
    assert head.proto_stride == 4 and isinstance(head.mask_loss, MaskBCELoss) and head.mask_loss.loss_weight == 7.5


def test_outputs_shapes_and_settings_are_checked():
    head = YOLOSegHead(num_classes=2, in_channels=[16, 32], strides=[8, 16], feat_channels=8, stacked_convs=1,
                       num_protos=5)
    cls, box, sizes, coefs, protos = head([torch.randn(2, 16, 6, 8), torch.randn(2, 32, 3, 4)])
    assert cls.shape == (2, 60, 2) and box.shape == (2, 60, 64) and coefs.shape == (2, 60, 5)
    assert protos.shape == (2, 5, 12, 16) and sizes == [(6, 8), (3, 4)]
    with pytest.raises(ValueError, match="mask loss.*model/head/mask_loss"):
        YOLOSegHead(num_classes=2, mask_loss=torch.nn.L1Loss())
    with pytest.raises(ValueError, match="even"):
        YOLOSegHead(num_classes=2, strides=[5, 10, 20])


def assignment(fg: torch.Tensor, gt_index: torch.Tensor) -> DynamicAssignment:
    b, p = fg.shape
    return DynamicAssignment(torch.zeros(b, p, dtype=torch.long), torch.zeros(b, p, 4), torch.zeros(b, p, 1), fg,
                             gt_index)


@pytest.mark.parametrize("loss", [MaskBCELoss(loss_weight=2.0), DiceLoss(smooth=1.0)], ids=type)
def test_mask_loss_is_the_mean_inside_each_gt_box_averaged_over_positives(loss):
    """Constant mask logits c = coefficients · prototypes everywhere; gt box 0 (32×32) is half mask, and mask pixels
    outside it (another object's) must not count. With `mask_loss_size` = the box side each RoIAlign bin is one
    pixel, so the expected values are exact: BCE w · (½ softplus(−c) + ½ softplus(c)), Dice 1 − (2pA/2 + 1)/(pA +
    A/2 + 1) with p = σ(c), A = 1024 — per positive, whatever its box size, then averaged over the 3 positives."""
    head = YOLOSegHead(num_classes=1, in_channels=8, strides=[8], stacked_convs=0, num_protos=2, mask_loss=loss,
                       mask_loss_size=32)
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 16:48, 8:24] = 1  # the left half of box 0
    masks[0, :, 48:] = 1  # outside box 0: ignored
    masks[1, 0:8, 0:8] = 1  # box 1 is all mask (no positive here)
    target = {"boxes": torch.tensor([[8.0, 16.0, 40.0, 48.0], [0.0, 0.0, 8.0, 8.0]]), "labels": torch.tensor([0, 0]),
              "masks": masks}
    c = 0.7
    coefs = torch.zeros(1, 64, 2)
    coefs[..., 0] = c / 2  # prototype 0 is 2 everywhere, prototype 1 is ignored
    protos = torch.stack([torch.full((16, 16), 2.0), torch.randn(16, 16)])[None].requires_grad_()
    fg = torch.zeros(1, 64, dtype=torch.bool)
    fg[0, [10, 11, 20]] = True
    value = head.mask_losses(coefs, protos, assignment(fg, torch.zeros(1, 64, dtype=torch.long)), [target])
    p, area = 1 / (1 + math.exp(-c)), 32 * 32
    if isinstance(loss, MaskBCELoss):
        expected = 2.0 * (0.5 * F.softplus(torch.tensor(-c)) + 0.5 * F.softplus(torch.tensor(c)))
    else:
        expected = torch.tensor(1 - (2 * p * area / 2 + 1) / (p * area + area / 2 + 1))
    torch.testing.assert_close(value, expected.float(), atol=1e-5, rtol=1e-5)
    value.backward()
    assert protos.grad[0].abs().sum() > 0  # through the crop of the prototypes


def test_losses_finite_and_gradients_reach_the_prototypes():
    torch.manual_seed(0)
    det = tiny_seg().train()
    image, _ = synthetic()
    losses = det(torch.stack([image, torch.randn(3, 64, 64)]), two_images(), image_sizes=[(64, 64), (48, 64)])
    assert set(losses) == {"loss_cls", "loss_box", "loss_dfl", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_mask"] > 0
    sum(losses.values()).backward()
    head = det.head
    assert head.proto.conv1.conv.weight.grad.abs().sum() > 0 and head.proto.upsample.weight.grad.abs().sum() > 0
    assert all(b[-1].weight.grad.abs().sum() > 0 for b in head.coef_branches[:1])
    assert det.backbone.stem.conv.weight.grad.abs().sum() > 0


def test_empty_ground_truth_and_missing_masks():
    det = tiny_seg().train()
    empty = two_images()[1]
    losses = det(torch.randn(2, 3, 64, 64), [empty, empty])
    assert losses["loss_mask"] == 0 and losses["loss_box"] == 0
    sum(losses.values()).backward()  # still a graph
    assert det.head.cls_branches[0][-1].weight.grad.abs().sum() > 0
    _, target = synthetic()
    no_masks = {k: v for k, v in target.items() if k != "masks"}
    with pytest.raises(ValueError, match="target 0 has no 'masks'.*with_masks=True"):
        det(torch.randn(1, 3, 64, 64), [no_masks])
    with pytest.raises(ValueError, match=r"'masks' has shape \(1, 64, 64\) for 2 boxes"):
        det(torch.randn(1, 3, 64, 64), [{**target, "masks": target["masks"][:1]}])


def test_predict_masks_at_the_original_size_inside_their_boxes():
    torch.manual_seed(0)
    det = tiny_seg().eval()
    det.head.postprocess.score_thr = 0.0  # untrained: accept everything so there is something to check
    with torch.no_grad():
        for branch in det.head.coef_branches:  # spread the mask logits so that masks are neither empty nor full
            torch.nn.init.normal_(branch[-1].weight, std=1.0)
        out = det(torch.randn(2, 3, 64, 96), image_sizes=[(64, 96), (48, 64)], orig_sizes=[(128, 192), (40, 50)])
        plain = det(torch.randn(1, 3, 64, 64), image_sizes=[(48, 60)])[0]
    assert plain["masks"].shape[1:] == (48, 60)
    for d, (h, w) in zip(out, [(128, 192), (40, 50)]):
        assert set(d) == {"boxes", "scores", "labels", "masks"}
        assert d["masks"].dtype == torch.bool and d["masks"].shape == (len(d["boxes"]), h, w) and len(d["boxes"])
        assert d["masks"].any()
        ys, xs = torch.arange(h) + 0.5, torch.arange(w) + 0.5  # pixel centres
        b = d["boxes"]
        outside = ((xs < b[:, None, 0]) | (xs > b[:, None, 2]))[:, None, :] | \
                  ((ys < b[:, None, 1]) | (ys > b[:, None, 3]))[:, :, None]
        assert not (d["masks"] & outside).any()


def test_paste_follows_the_prototypes_and_removes_the_padding():
    """One prototype, coefficient 1: logits +8 on the left 5 of 8 prototype columns (20 of 32 input pixels), −8
    elsewhere. The image is 24 px wide before padding to 32, and is shown at twice its size: the mask covers the
    left 20/24 of it, cut by the box."""
    protos = torch.full((1, 4, 8), -8.0)
    protos[..., :5] = 8.0
    boxes = torch.tensor([[0.0, 0.0, 48.0, 32.0], [0.0, 0.0, 10.0, 32.0]])
    masks = paste_prototype_masks(torch.ones(2, 1), protos, boxes, (16, 24), (32, 48))
    assert masks.shape == (2, 32, 48) and masks.dtype == torch.bool
    columns = masks[0].all(0)
    assert columns[:39].all() and not columns[41:].any()  # 20 / 24 × 48 = 40, ± the bilinear edge
    assert masks[1, :, :10].all() and not masks[1, :, 10:].any()
    assert paste_prototype_masks(torch.zeros(0, 1), protos, torch.zeros(0, 4), (16, 24), (7, 9)).shape == (0, 7, 9)


def test_detector_weights_start_yolo_seg():
    """A YOLO detector's weights are all of YOLO-seg's but the mask branches (same names, same shapes)."""
    box = Detector(CSPDarknet(deepen_factor=0.33, widen_factor=0.125), partial(PAN), partial(YOLOHead, num_classes=3))
    seg = tiny_seg()
    missing = seg.load_state_dict(box.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith(("head.proto.", "head.coef_branches.")) for k in missing)


def test_overfits_one_image_with_two_shapes():
    """80 AdamW steps on one 64-px image: both shapes found with their class and mask IoU >= 0.8, the L-shape's
    mask unlike its box. Predicted with BatchNorm in training mode: at 64 px the deepest maps are 2×2, where running
    (unbiased) variances differ from the batch's by 4/3, which says nothing about the mask head."""
    torch.manual_seed(0)
    det = tiny_seg(num_classes=2, init_distance=1.0).train()
    image, target = synthetic()
    opt = torch.optim.AdamW(det.parameters(), lr=0.01, weight_decay=0.0)
    for _ in range(80):
        losses = det(image[None], [target])
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    with torch.no_grad():
        out = det.head.predict(det.extract_features(image[None]), [(64, 64)])[0]
    for label, gt in enumerate(target["masks"].bool()):
        best = (out["labels"] == label).nonzero()[0, 0]
        mask = out["masks"][best]
        assert out["scores"][best] > 0.5
        assert (mask & gt).sum() / (mask | gt).sum() >= 0.8
    ell_box = torch.zeros(64, 64, dtype=torch.bool)
    ell_box[8:28, 30:58] = True
    ell = out["masks"][(out["labels"] == 1).nonzero()[0, 0]]
    assert (ell & ell_box).sum() / (ell | ell_box).sum() < 0.85  # the L, not its box (IoU of the L with it: 0.75)


def test_postprocessor_carries_per_candidate_extras_through_the_selection():
    """What `predict` gathers the kept points' coefficients with: each extra row follows its box through the size
    filter, NMS and the per-image top-k; without extras the output is as before."""
    from framework.models.ops.postprocess import Postprocessor

    boxes = torch.tensor([[0.0, 0, 10, 10], [0.5, 0, 10, 10], [20, 20, 21, 20.5], [30, 30, 40, 40], [0, 0, 5, 5]])
    scores = torch.tensor([0.9, 0.8, 0.95, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 1, 0])
    image_idx = torch.tensor([0, 0, 0, 0, 1])
    post = Postprocessor(score_thr=0.0, nms_iou_thr=0.5, max_per_img=2, min_size=1.0)
    extra = torch.arange(5.0)[:, None].expand(5, 3)
    dets = post(boxes, scores, labels, image_idx, 2, [(50, 50), (50, 50)], None, extras={"coefficients": extra})
    # box 2 is too small, box 1 is suppressed by box 0; image 0 keeps its two best
    assert dets[0]["coefficients"][:, 0].tolist() == [0.0, 3.0] and dets[1]["coefficients"][:, 0].tolist() == [4.0]
    plain = post(boxes, scores, labels, image_idx, 2, [(50, 50), (50, 50)], None)
    assert set(plain[0]) == {"boxes", "scores", "labels"} and torch.equal(plain[0]["boxes"], dets[0]["boxes"])
