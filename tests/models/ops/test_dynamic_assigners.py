import pytest
import torch

from framework.models.losses import elementwise_box_iou
from framework.models.ops.dynamic_assigners import BACKGROUND, TaskAlignedAssigner, points_inside_boxes
from framework.models.ops.targets import pad_targets


def grid_points(size: int = 64, stride: int = 8) -> torch.Tensor:
    c = torch.arange(size // stride, dtype=torch.float32) * stride + stride / 2
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x, y], -1).reshape(-1, 2)


def square_boxes(points: torch.Tensor, half: float) -> torch.Tensor:
    return torch.cat([points - half, points + half], -1)


def random_case(seed: int, batch: int = 3, num_classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    points = grid_points(64, 8)
    num_points = len(points)
    scores = torch.rand(batch, num_points, num_classes, generator=g)
    pred = square_boxes(points, 6.0).expand(batch, -1, -1) + torch.randn(batch, num_points, 4, generator=g) * 3
    targets = []
    for n in (3, 0, 5)[:batch]:
        xy = torch.rand(n, 2, generator=g) * 40
        wh = torch.rand(n, 2, generator=g) * 30 + 8
        targets.append({"boxes": torch.cat([xy, xy + wh], -1), "labels": torch.randint(num_classes, (n,), generator=g)})
    return points, scores, pred, targets


def test_high_scoring_point_inside_the_box_is_chosen():
    points = torch.tensor([[5.0, 5.0], [15.0, 5.0], [50.0, 50.0], [35.0, 5.0]])
    scores = torch.full((1, 4, 3), 0.1)
    scores[0, 0, 1] = 0.9  # right class, right place
    pred = torch.tensor([[[0.0, 0, 20, 10], [0, 0, 20, 10], [0, 0, 20, 10], [0, 0, 20, 10]]])
    gt, labels, valid = torch.tensor([[[0.0, 0, 20, 10]]]), torch.tensor([[1]]), torch.ones(1, 1, dtype=torch.bool)
    out = TaskAlignedAssigner(topk=1).assign(scores, pred, points, gt, labels, valid)
    assert out.fg_mask.tolist() == [[True, False, False, False]]
    assert out.labels.tolist() == [[1, BACKGROUND, BACKGROUND, BACKGROUND]]
    torch.testing.assert_close(out.boxes[0, 0], gt[0, 0])
    # the only positive is its box's best: target score = its IoU (1.0), in its class only
    assert out.scores[0, 0].tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert out.scores[0, 1:].abs().sum() == 0
    # with topk 2 the second point inside joins, with a lower soft target
    two = TaskAlignedAssigner(topk=2).assign(scores, pred, points, gt, labels, valid)
    assert two.fg_mask.tolist() == [[True, True, False, False]]
    assert 0 < two.scores[0, 1, 1] < two.scores[0, 0, 1] == pytest.approx(1.0)


def test_points_outside_every_box_are_never_positive():
    for seed in range(3):
        points, scores, pred, targets = random_case(seed)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, torch.device("cpu"))
        out = TaskAlignedAssigner(topk=13).assign(scores, pred, points, gt_boxes, gt_labels, gt_valid)
        inside_any = (points_inside_boxes(points, gt_boxes) & gt_valid[..., None]).any(1)
        assert out.fg_mask.any()
        assert not (out.fg_mask & ~inside_any).any()
        assert (out.labels[~out.fg_mask] == BACKGROUND).all() and (out.scores[~out.fg_mask] == 0).all()
        # a positive lies inside the box it is assigned to
        assigned = out.boxes[out.fg_mask]
        pts = points.expand(len(targets), -1, -1)[out.fg_mask]
        assert ((pts > assigned[:, :2]) & (pts < assigned[:, 2:])).all()


def test_point_claimed_by_two_boxes_goes_to_the_one_it_overlaps_most():
    points = torch.tensor([[10.0, 10.0]])
    scores = torch.full((1, 1, 2), 0.5)
    pred = torch.tensor([[[2.0, 2, 18, 18]]])
    # both boxes contain the point; box 1 matches the predicted box far better, though box 0 comes first
    gt = torch.tensor([[[0.0, 0, 40, 40], [1, 1, 19, 19]]])
    out = TaskAlignedAssigner(topk=10).assign(scores, pred, points, gt, torch.tensor([[0, 1]]),
                                              torch.ones(1, 2, dtype=torch.bool))
    assert out.fg_mask.tolist() == [[True]] and out.gt_index.tolist() == [[1]] and out.labels.tolist() == [[1]]
    torch.testing.assert_close(out.boxes[0, 0], gt[0, 1])


def test_padded_boxes_are_never_assigned():
    points, scores, pred, targets = random_case(0)
    gt_boxes, gt_labels, gt_valid = pad_targets(targets, torch.device("cpu"))
    assert not gt_valid.all()  # images with fewer boxes are padded
    # make the padding attractive: padded rows get a box covering everything
    gt_boxes = torch.where(gt_valid[..., None], gt_boxes, torch.tensor([0.0, 0, 64, 64]))
    out = TaskAlignedAssigner().assign(scores, pred, points, gt_boxes, gt_labels, gt_valid)
    assert gt_valid.gather(1, out.gt_index)[out.fg_mask].all()
    assert not out.fg_mask[1].any()  # the image without boxes has no positives


def test_topk_bounds_positives_and_soft_targets_peak_at_the_best_iou():
    points, scores, pred, targets = random_case(1)
    gt_boxes, gt_labels, gt_valid = pad_targets(targets, torch.device("cpu"))
    out = TaskAlignedAssigner(topk=4).assign(scores, pred, points, gt_boxes, gt_labels, gt_valid)
    for b in range(len(targets)):
        for m in range(int(gt_valid[b].sum())):
            mine = out.fg_mask[b] & (out.gt_index[b] == m)
            assert mine.sum() <= 4
            if mine.any():
                iou = elementwise_box_iou(pred[b][mine], gt_boxes[b, m].expand(int(mine.sum()), 4))
                target = out.scores[b][mine, gt_labels[b, m]]
                # each box's best-aligned positive gets (at most) the best IoU among its positives
                assert target.max() <= iou.max() + 1e-6 and (target >= 0).all()


def test_batch_result_equals_per_image_results():
    points, scores, pred, targets = random_case(2)
    assigner = TaskAlignedAssigner(topk=5)
    gt_boxes, gt_labels, gt_valid = pad_targets(targets, torch.device("cpu"))
    batched = assigner.assign(scores, pred, points, gt_boxes, gt_labels, gt_valid)
    for i, t in enumerate(targets):
        b, lab, v = pad_targets([t], torch.device("cpu"))
        single = assigner.assign(scores[i:i + 1], pred[i:i + 1], points, b, lab, v)
        assert torch.equal(single.fg_mask[0], batched.fg_mask[i])
        assert torch.equal(single.labels[0], batched.labels[i])
        torch.testing.assert_close(single.scores[0], batched.scores[i])
        fg = single.fg_mask[0]
        torch.testing.assert_close(single.boxes[0][fg], batched.boxes[i][fg])


def test_no_ground_truth_at_all():
    points = grid_points(32, 8)
    scores = torch.rand(2, len(points), 3)
    gt_boxes, gt_labels, gt_valid = pad_targets(
        [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2, torch.device("cpu"))
    out = TaskAlignedAssigner().assign(scores, square_boxes(points, 4).expand(2, -1, -1), points, gt_boxes,
                                       gt_labels, gt_valid)
    assert not out.fg_mask.any() and out.scores.shape == (2, len(points), 3) and out.scores.sum() == 0
    assert (out.labels == BACKGROUND).all()
    with pytest.raises(ValueError, match="topk"):
        TaskAlignedAssigner(topk=0)


def test_ciou_alignment_prefers_the_centred_prediction():
    """YOLOv8 aligns with CIoU (clamped at 0): of two predictions with about the same IoU, the one whose centre sits
    on the box's wins, where plain IoU picks the other (IoU 0.51 vs 0.50)."""
    points = torch.tensor([[5.0, 5.0], [15.0, 15.0], [10.0, 2.0]])
    scores = torch.full((1, 3, 1), 0.5)
    gt, labels, valid = torch.tensor([[[0.0, 0, 20, 20]]]), torch.tensor([[0]]), torch.ones(1, 1, dtype=torch.bool)
    off_centre, centred, far = [0.0, 0, 20, 10.2], [0.0, 5, 20, 15], [40.0, 40, 50, 50]
    pred = torch.tensor([[off_centre, centred, far]])
    plain = TaskAlignedAssigner(topk=1, iou="iou").assign(scores, pred, points, gt, labels, valid)
    ciou = TaskAlignedAssigner(topk=1, iou="ciou").assign(scores, pred, points, gt, labels, valid)
    assert plain.fg_mask.tolist() == [[True, False, False]] and ciou.fg_mask.tolist() == [[False, True, False]]
    # the soft target is the box's best CIoU: 0.5 minus the aspect term (no centre distance)
    assert ciou.scores[0, 1, 0].item() == pytest.approx(0.4967, abs=1e-3)
    # the far prediction's CIoU is negative and clamps to 0: with room for all three it is a zero-score positive
    three = TaskAlignedAssigner(topk=3, iou="ciou").assign(scores, pred, points, gt, labels, valid)
    assert three.fg_mask.all() and three.scores[0, 2, 0] == 0 and (three.scores >= 0).all()
    with pytest.raises(ValueError, match="iou must be one of"):
        TaskAlignedAssigner(iou="giou")
