"""framework/visualization.py: predictions over ground truth, instance masks, and the results figure of a
metrics.jsonl."""
from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from framework.visualization import GT_COLOUR, GT_HALO, PALETTE, draw, draw_detections, draw_masks, plot_results

CLASSES = ["circle", "square", "triangle"]


def _blank() -> torch.Tensor:
    return torch.full((3, 120, 160), 128, dtype=torch.uint8)


def _is(image: torch.Tensor, colour: tuple[int, int, int]) -> torch.Tensor:
    """(H, W) mask of the pixels of `colour`."""
    return (image == torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1)).all(0)


def _edges(mask: torch.Tensor, box: tuple[int, int, int, int]) -> float:
    """Fraction of the box's outline pixels set in `mask`."""
    x0, y0, x1, y1 = box
    edge = torch.cat([mask[y0, x0:x1 + 1], mask[y1, x0:x1 + 1], mask[y0:y1 + 1, x0], mask[y0:y1 + 1, x1]])
    return edge.float().mean().item()


def test_predictions_drawn_above_threshold_only():
    prediction = {"boxes": torch.tensor([[20.0, 30.0, 70.0, 90.0], [90.0, 40.0, 140.0, 100.0]]),
                  "scores": torch.tensor([0.9, 0.1]), "labels": torch.tensor([1, 2])}
    out = draw_detections(_blank(), prediction, None, CLASSES, score_thr=0.3)
    assert out.dtype == torch.uint8 and out.shape == (3, 120, 160)
    assert _edges(_is(out, PALETTE[1]), (20, 30, 70, 90)) > 0.95  # the 0.9 square, in class 1's colour
    assert not _is(out, PALETTE[2]).any()  # the 0.1 triangle is under score_thr
    assert not _is(out, GT_COLOUR).any()  # no ground truth given
    low = draw_detections(_blank(), prediction, None, CLASSES, score_thr=0.05)
    assert _edges(_is(low, PALETTE[2]), (90, 40, 140, 100)) > 0.95


def test_max_dets_keeps_the_best():
    prediction = {"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [90.0, 40.0, 140.0, 100.0]]),
                  "scores": torch.tensor([0.5, 0.8]), "labels": torch.tensor([0, 2])}
    out = draw_detections(_blank(), prediction, None, CLASSES, score_thr=0.0, max_dets=1)
    assert _is(out, PALETTE[2]).any() and not _is(out, PALETTE[0]).any()


def test_ground_truth_is_distinguishable():
    gt = {"boxes": torch.tensor([[20.0, 30.0, 70.0, 90.0]]), "labels": torch.tensor([1])}
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    out = draw_detections(_blank(), empty, gt, CLASSES)
    assert _edges(_is(out, GT_COLOUR), (20, 30, 70, 90)) > 0.95  # thin white line on the box
    assert _edges(_is(out, GT_HALO), (19, 29, 71, 91)) > 0.95  # black halo around it
    assert not any(_is(out, c).any() for c in PALETTE if c != GT_COLOUR)  # no class colour: not a prediction
    # Together: the prediction (class colour, drawn on top) and the ground truth both remain visible.
    pred = {"boxes": torch.tensor([[25.0, 35.0, 65.0, 85.0]]), "scores": torch.tensor([0.7]), "labels": torch.tensor([1])}
    both = draw_detections(_blank(), pred, gt, CLASSES)
    assert _edges(_is(both, PALETTE[1]), (25, 35, 65, 85)) > 0.95
    assert _edges(_is(both, GT_COLOUR), (20, 30, 70, 90)) > 0.6  # the prediction's tag covers part of it


def test_draw_keeps_its_positional_signature():
    target = {"boxes": torch.tensor([[20.0, 30.0, 70.0, 90.0]]), "labels": torch.tensor([0])}
    plain = draw(_blank(), target, CLASSES)
    scored = draw(_blank(), target, CLASSES, scores=torch.tensor([0.87]))
    assert _edges(_is(plain, PALETTE[0]), (20, 30, 70, 90)) > 0.95
    assert _is(scored, PALETTE[0]).sum() > _is(plain, PALETTE[0]).sum()  # "circle 0.87": a wider tag
    assert not _is(draw(_blank(), target, CLASSES, tags=False), (0, 0, 0)).any()  # no tag, no black text


def _rect_masks(*rects: tuple[int, int, int, int], size=(120, 160)) -> torch.Tensor:
    masks = torch.zeros((len(rects), *size), dtype=torch.uint8)
    for m, (x0, y0, x1, y1) in zip(masks, rects):
        m[y0:y1, x0:x1] = 1
    return masks


def _blend(colour: tuple[int, int, int], alpha: float = 0.4, under: int = 128) -> tuple[int, ...]:
    return tuple(round(under * (1 - alpha) + c * alpha) for c in colour)


def test_masks_are_filled_translucent_and_outlined_in_their_class_colour():
    out = draw_masks(_blank(), _rect_masks((20, 30, 70, 90)), [1])
    assert out.dtype == torch.uint8 and out.shape == (3, 120, 160)
    outline = _is(out, PALETTE[1])
    assert outline[30, 20:70].all() and outline[89, 20:70].all() and outline[30:90, 20].all() and outline[30:90, 69].all()
    assert outline.sum() == 2 * 50 + 2 * 58  # the 1 px border of the 50×60 mask, nothing else
    fill = _is(out, _blend(PALETTE[1]))
    assert fill[31:89, 21:69].all() and fill.sum() == 48 * 58  # the inside, the image still showing through
    assert (out[:, :30] == 128).all() and (out[:, :, 70:] == 128).all()  # outside: untouched


def test_overlapping_masks_blend_and_keep_both_outlines():
    out = draw_masks(_blank(), _rect_masks((20, 20, 80, 80), (50, 50, 110, 110)).bool(), [0, 2])
    overlap = out[:, 60, 60]
    assert overlap.tolist() != [0, 0, 0]  # not blacked out as draw_segmentation_masks does
    expected = [round(round(128 * 0.6 + a * 0.4) * 0.6 + b * 0.4) for a, b in zip(PALETTE[0], PALETTE[2])]
    assert (overlap.float() - torch.tensor(expected, dtype=torch.float32)).abs().max() <= 1  # one fill over the other
    edge = _is(out, PALETTE[0])[20:80, 79]  # the first one's edge, not hidden under the second's fill …
    assert edge[:30].all() and edge[31:].all()  # … except where the second one's edge crosses it (y = 50)
    assert _is(out, PALETTE[2])[50, 50:110].all()


def test_masks_at_another_size_are_scaled_to_the_image():
    small = _rect_masks((10, 15, 35, 45), size=(60, 80))  # half the image size: (20, 30, 70, 90) at full size
    out = draw_masks(_blank(), small, [1])
    assert _is(out, PALETTE[1])[30, 20:70].all() and _is(out, _blend(PALETTE[1]))[31:89, 21:69].all()
    assert torch.equal(draw_masks(_blank(), torch.zeros((0, 120, 160)), []), _blank())
    with pytest.raises(ValueError, match="2 masks for 1 labels"):
        draw_masks(_blank(), _rect_masks((0, 0, 5, 5), (5, 5, 9, 9)), [0])


def test_draw_and_draw_detections_draw_masks_when_there_are_some():
    target = {"boxes": torch.tensor([[20.0, 30.0, 70.0, 90.0]]), "labels": torch.tensor([1]),
              "masks": _rect_masks((20, 30, 70, 90))}
    assert _is(draw(_blank(), target, CLASSES), _blend(PALETTE[1]))[40:80, 25:65].all()
    assert not _is(draw(_blank(), target, CLASSES, masks=False), _blend(PALETTE[1])).any()
    prediction = {"boxes": torch.tensor([[20.0, 30.0, 70.0, 90.0], [90.0, 40.0, 140.0, 100.0]]),
                  "scores": torch.tensor([0.9, 0.1]), "labels": torch.tensor([1, 2]),
                  "masks": _rect_masks((20, 30, 70, 90), (90, 40, 140, 100)).bool()}
    out = draw_detections(_blank(), prediction, None, CLASSES, score_thr=0.3)
    assert _is(out, _blend(PALETTE[1]))[40:80, 25:65].all()
    assert not _is(out, _blend(PALETTE[2])).any()  # under score_thr: neither box nor mask


def _write_metrics(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_plot_results_writes_a_png(tmp_path):
    lines = [{"mode": "pipeline", "epoch": 1, "Mosaic.prob": 1.0}]
    for it in range(1, 31):
        cls, box = 2.0 / math.sqrt(it), 1.0 / it
        lines.append({"mode": "train", "loss_cls": cls, "loss_box": box, "loss": cls + box, "lr": 0.01 * it / 30,
                      "images_per_s": 50.0, "epoch": 1 + (it - 1) // 10, "iter": it})
        if it % 10 == 0:
            lines.append({"mode": "val", "epoch": it // 10, "iter": it, "bbox/mAP": it / 100, "bbox/mAP_50": it / 50,
                          "bbox/mAP_l": None})  # NaN is written as null
    _write_metrics(tmp_path / "metrics.jsonl", lines)
    out = plot_results(tmp_path / "metrics.jsonl", tmp_path / "plots" / "results.png")
    assert out == tmp_path / "plots" / "results.png"
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width >= 800 and png.height >= 400
    assert [p.name for p in out.parent.iterdir()] == ["results.png"]  # no temporary file left behind


def test_plot_results_without_val_records(tmp_path):
    _write_metrics(tmp_path / "metrics.jsonl", [{"mode": "train", "loss": 1.0, "lr": 0.1, "epoch": 1, "iter": 1}])
    with Image.open(plot_results(tmp_path / "metrics.jsonl", tmp_path / "r.png")) as png:
        assert png.format == "PNG"


@pytest.mark.parametrize("lines", [[], [{"mode": "pipeline", "epoch": 1, "Mosaic.prob": 1.0}]])
def test_plot_results_nothing_to_plot(tmp_path, lines):
    _write_metrics(tmp_path / "metrics.jsonl", lines)
    with pytest.raises(ValueError, match="nothing to plot|no train losses"):
        plot_results(tmp_path / "metrics.jsonl", tmp_path / "results.png")
    assert not (tmp_path / "results.png").exists()
