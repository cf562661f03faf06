"""Tests for the ultralytics-style evaluation plots: hand-built cases with known curves and confusion matrices."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("matplotlib")

from framework.evaluation.plots import (  # noqa: E402
    GRID_POINTS,
    confusion_matrix,
    detection_curves,
    figure_to_rgb,
    normalize_confusion,
    write_plots,
)

BG = 2  # background index with K = 2


def _gt(image_id, boxes, labels, ignore=None):
    ann = {"image_id": image_id, "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
           "labels": np.asarray(labels, dtype=np.int64)}
    if ignore is not None:
        ann["ignore"] = np.asarray(ignore, dtype=bool)
    return ann


def _det(boxes, scores, labels):
    """Detections as the runner has them: torch tensors."""
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64)}


def _perfect_case():
    anns = [
        _gt(1, [[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]),
        _gt(2, [[5, 5, 50, 50]], [1]),
    ]
    dets = {
        1: _det([[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 1]),
        2: _det([[5, 5, 50, 50]], [0.7], [1]),
    }
    return anns, dets


def test_perfect_detections():
    anns, dets = _perfect_case()
    curves = detection_curves(anns, dets, num_classes=2)
    np.testing.assert_allclose(curves["ap"], [1.0, 1.0])
    assert curves["map"] == pytest.approx(1.0)
    assert curves["num_gt"].tolist() == [1, 2] and curves["num_det"].tolist() == [1, 2]
    conf = curves["conf"]
    assert conf.shape == (GRID_POINTS,) and conf[0] == 0 and conf[-1] == 1
    below = conf <= 0.7  # every detection kept
    assert np.all(curves["recall"][:, below] == 1.0)
    assert np.all(curves["precision"][:, below] == 1.0)
    assert np.all(curves["f1"][:, below] == 1.0)
    # PR curve: precision 1 at every recall.
    np.testing.assert_allclose(curves["pr_precision"], 1.0)
    assert curves["best_f1"] == pytest.approx(1.0)
    assert curves["best_conf"] <= 0.7

    cm = confusion_matrix(anns, dets, num_classes=2)
    assert cm.shape == (3, 3) and cm.dtype == np.int64
    np.testing.assert_array_equal(cm, np.diag([1, 2, 0]))
    assert cm[BG].sum() == 0 and cm[:, BG].sum() == 0


def test_missed_gt_and_false_positive_land_in_background():
    anns = [_gt(1, [[0, 0, 10, 10], [100, 100, 120, 120]], [0, 1])]
    # Class 0 found; class 1 missed; a class-0 detection on empty ground is a false positive.
    dets = {1: _det([[0, 0, 10, 10], [200, 200, 230, 230]], [0.9, 0.6], [0, 0])}
    cm = confusion_matrix(anns, dets, num_classes=2)
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[0, 0] = 1  # matched
    expected[1, BG] = 1  # missed class-1 box: (true 1, predicted background)
    expected[BG, 0] = 1  # false positive of class 0: (true background, predicted 0)
    np.testing.assert_array_equal(cm, expected)

    curves = detection_curves(anns, dets, num_classes=2)
    assert curves["ap"][0] == pytest.approx(1.0)  # the FP scores below the TP
    assert curves["ap"][1] == 0.0 and curves["num_det"][1] == 0
    # At conf 0: class 0 has precision 1/2, recall 1.
    assert curves["precision"][0, 0] == pytest.approx(0.5)
    assert curves["recall"][0, 0] == pytest.approx(1.0)


def test_confidence_threshold_drops_low_scores():
    anns = [_gt(1, [[0, 0, 10, 10]], [0])]
    dets = {1: _det([[0, 0, 10, 10], [50, 50, 60, 60]], [0.2, 0.1], [0, 1])}
    cm = confusion_matrix(anns, dets, num_classes=2)  # conf_thr 0.25: both dropped -> only a miss
    assert cm[0, BG] == 1 and cm.sum() == 1
    cm = confusion_matrix(anns, dets, num_classes=2, conf_thr=0.05)
    assert cm[0, 0] == 1 and cm[BG, 1] == 1 and cm.sum() == 2


def test_wrong_class_lands_off_diagonal():
    anns = [_gt(1, [[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1])]
    dets = {1: _det([[0, 0, 10, 10], [21, 21, 40, 40]], [0.9, 0.8], [1, 1])}  # box of class 0 called 1
    cm = confusion_matrix(anns, dets, num_classes=2)
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[0, 1] = 1  # true 0, predicted 1
    expected[1, 1] = 1
    np.testing.assert_array_equal(cm, expected)
    # For the curves the wrong-class detection is a class-1 false positive and class 0 is missed.
    curves = detection_curves(anns, dets, num_classes=2)
    assert curves["ap"][0] == 0.0
    assert curves["recall"][1, 0] == 1.0 and curves["precision"][1, 0] == pytest.approx(0.5)


def test_confusion_matching_is_one_to_one_greedy_by_iou():
    # Two gts, two dets; det A overlaps gt 0 most but det B overlaps only gt 0 too: one of them is a FP.
    anns = [_gt(1, [[0, 0, 10, 10]], [0])]
    dets = {1: _det([[0, 0, 10, 9], [0, 0, 10, 10]], [0.9, 0.5], [1, 0])}
    cm = confusion_matrix(anns, dets, num_classes=2)
    # The exact-box class-0 detection (IoU 1) wins over the higher-scored class-1 one (IoU 0.9).
    assert cm[0, 0] == 1 and cm[BG, 1] == 1 and cm.sum() == 2


def test_duplicate_detection_is_false_positive_in_curves():
    anns = [_gt(1, [[0, 0, 10, 10]], [0])]
    dets = {1: _det([[0, 0, 10, 10], [0, 0, 10, 9.5]], [0.9, 0.8], [0, 0])}
    curves = detection_curves(anns, dets, num_classes=1)
    assert curves["ap"][0] == pytest.approx(1.0)
    assert curves["precision"][0, 0] == pytest.approx(0.5)  # second one is an FP
    assert curves["num_det"][0] == 2


def test_ignored_gts_create_no_misses_or_false_positives():
    anns = [_gt(1, [[0, 0, 10, 10], [50, 50, 90, 90], [200, 200, 220, 220]], [0, 0, 1],
                ignore=[False, True, True])]
    dets = {1: _det([[0, 0, 10, 10], [50, 50, 90, 90], [52, 52, 90, 90]], [0.9, 0.95, 0.8], [0, 0, 0])}
    cm = confusion_matrix(anns, dets, num_classes=2)
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[0, 0] = 1  # only the real box counts; the two detections on the crowd region and the
    np.testing.assert_array_equal(cm, expected)  # unmatched ignored class-1 box count nowhere

    curves = detection_curves(anns, dets, num_classes=2)
    assert curves["num_gt"].tolist() == [1, 0]
    assert curves["num_det"].tolist() == [1, 0]  # the two crowd detections are neither TP nor FP
    assert curves["ap"][0] == pytest.approx(1.0)
    assert np.all(curves["precision"][0, curves["conf"] <= 0.9] == 1.0)
    # Class 1 has no (non-ignored) ground truth: nan, and left out of the mean.
    assert np.isnan(curves["ap"][1]) and not curves["valid"][1]
    assert curves["map"] == pytest.approx(1.0)
    assert curves["best_f1"] == pytest.approx(1.0)


def test_ignored_gt_does_not_steal_a_real_match():
    # A detection overlapping both a real box and a crowd region matches the real box.
    anns = [_gt(1, [[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0], ignore=[True, False])]
    dets = {1: _det([[0, 0, 10, 10]], [0.9], [0])}
    curves = detection_curves(anns, dets, num_classes=1)
    assert curves["ap"][0] == pytest.approx(1.0) and curves["num_det"][0] == 1
    cm = confusion_matrix(anns, dets, num_classes=1)
    np.testing.assert_array_equal(cm, [[1, 0], [0, 0]])


def test_best_f1_threshold_known_answer(tmp_path):
    # One class, 4 gts in 4 images; detections by score: TP .9, TP .8, TP .7, FP .6, FP .5, TP .4, FP .3.
    # F1 per kept set: .4, .667, .857 (score >= .7), .75, .667, .8, .727 -> best 6/7 for thresholds in (0.6, 0.7].
    anns = [_gt(i, [[0, 0, 10, 10]], [0]) for i in range(4)]
    far = [100, 100, 110, 110]
    hit = [0, 0, 10, 10]
    dets = {
        0: _det([hit, far], [0.9, 0.6], [0, 0]),
        1: _det([hit, far], [0.8, 0.5], [0, 0]),
        2: _det([hit, far], [0.7, 0.3], [0, 0]),
        3: _det([hit], [0.4], [0]),
    }
    curves = detection_curves(anns, dets, num_classes=1)
    assert curves["best_f1"] == pytest.approx(6 / 7)
    assert 0.6 < curves["best_conf"] <= 0.7
    assert curves["best_precision"] == pytest.approx(1.0)
    assert curves["best_recall"] == pytest.approx(0.75)
    i = int(np.searchsorted(curves["conf"], 0.35))  # between .3 and .4: 4 TP of 6 kept
    assert curves["f1"][0, i] == pytest.approx(0.8)
    # AP (all-point envelope): recall .25/.5/.75 at precision 1, recall 1 at precision 4/6.
    assert curves["ap"][0] == pytest.approx(0.75 + 0.25 * 4 / 6)
    report = write_plots(anns, dets, ["obj"], tmp_path)
    assert report["best_f1"] == pytest.approx(6 / 7) and report["best_conf"] == curves["best_conf"]


def test_tied_scores_enter_together():
    anns = [_gt(1, [[0, 0, 10, 10]], [0])]
    dets = {1: _det([[50, 50, 60, 60], [0, 0, 10, 10]], [0.5, 0.5], [0, 0])}  # FP listed first, same score
    curves = detection_curves(anns, dets, num_classes=1)
    assert curves["ap"][0] == pytest.approx(0.5)  # one PR point: recall 1 at precision 1/2


def test_write_plots_writes_three_decodable_pngs(tmp_path):
    anns, dets = _perfect_case()
    dets[2] = _det([[5, 5, 50, 50], [60, 60, 80, 80]], [0.7, 0.4], [1, 0])
    report = write_plots(anns, dets, ["cat", "dog"], tmp_path / "run")
    assert set(report["paths"]) == {"pr_curve", "confusion_matrix", "f1_curve"}
    for name, path in report["paths"].items():
        assert path == tmp_path / "run" / f"{name}.png" and path.is_file()
        with Image.open(path) as img:
            img.load()
            assert img.format == "PNG"
            assert img.width >= 600 and img.height >= 400
            assert len(set(np.asarray(img.convert("L")).ravel().tolist())) > 10  # not blank
    assert isinstance(report["best_f1"], float) and isinstance(report["best_conf"], float)
    assert report["confusion_matrix"].shape == (3, 3)
    from matplotlib.figure import Figure

    assert set(report["figures"]) == set(report["paths"])
    for fig in report["figures"].values():
        assert isinstance(fig, Figure)
        rgb = figure_to_rgb(fig)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    # Figures are not registered with pyplot (nothing to close, no display touched).
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_figures_go_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    anns, dets = _perfect_case()
    report = write_plots(anns, dets, ["cat", "dog"], tmp_path)
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    try:
        for name, fig in report["figures"].items():
            writer.add_figure(f"val/{name}", fig, 0)
    finally:
        writer.close()
    assert any((tmp_path / "tb").iterdir())


def test_return_figures_false(tmp_path):
    anns, dets = _perfect_case()
    report = write_plots(anns, dets, ["cat", "dog"], tmp_path, return_figures=False, normalize=False)
    assert "figures" not in report and all(p.is_file() for p in report["paths"].values())


def test_empty_inputs_do_not_crash(tmp_path):
    anns = [_gt(1, [[0, 0, 10, 10]], [0]), _gt(2, [], [])]
    # No detections at all (missing entries, and an empty entry).
    for dets in ({}, {1: _det([], [], [])}):
        curves = detection_curves(anns, dets, num_classes=2)
        assert curves["ap"][0] == 0.0 and curves["best_f1"] == 0.0
        cm = confusion_matrix(anns, dets, num_classes=2)
        assert cm[0, BG] == 1 and cm.sum() == 1
        report = write_plots(anns, dets, ["a", "b"], tmp_path / "one")
        assert all(p.is_file() for p in report["paths"].values())
    # No ground truth, no detections.
    report = write_plots([], {}, ["a", "b"], tmp_path / "none")
    assert report["best_f1"] == 0.0 and report["confusion_matrix"].sum() == 0
    assert np.isnan(report["map50"])
    for path in report["paths"].values():
        with Image.open(path) as img:
            img.load()
    # Detections but no ground truth: all false positives.
    report = write_plots([_gt(1, [], [])], {1: _det([[0, 0, 5, 5]], [0.9], [1])}, ["a", "b"], tmp_path / "fp")
    assert report["confusion_matrix"][BG, 1] == 1


def test_input_validation():
    with pytest.raises(ValueError, match="out of range"):
        confusion_matrix([_gt(1, [[0, 0, 1, 1]], [3])], {}, num_classes=2)
    with pytest.raises(ValueError, match="more than once"):
        detection_curves([_gt(1, [], []), _gt(1, [], [])], {}, num_classes=1)


def test_normalize_confusion_rows():
    m = np.array([[2, 1, 1], [0, 0, 0], [0, 3, 0]])
    n = normalize_confusion(m)
    np.testing.assert_allclose(n, [[0.5, 0.25, 0.25], [0, 0, 0], [0, 1, 0]])


def test_many_classes_and_speed(tmp_path):
    """5000 images x 100 detections over 80 classes stays fast (matching is per image, IoU vectorized)."""
    rng = np.random.default_rng(0)
    k, n_img, n_det = 80, 5000, 100
    anns, dets = [], {}
    for i in range(n_img):
        g = int(rng.integers(1, 12))
        xy = rng.uniform(0, 600, (g, 2))
        wh = rng.uniform(10, 200, (g, 2))
        gt_boxes = np.concatenate([xy, xy + wh], 1)
        gt_labels = rng.integers(0, k, g)
        anns.append({"image_id": i, "boxes": gt_boxes, "labels": gt_labels, "ignore": rng.random(g) < 0.05})
        src = rng.integers(0, g, n_det)
        jitter = rng.normal(0, 8, (n_det, 4))
        boxes = gt_boxes[src] + jitter
        labels = np.where(rng.random(n_det) < 0.8, gt_labels[src], rng.integers(0, k, n_det))
        dets[i] = {"boxes": boxes, "scores": rng.random(n_det), "labels": labels}
    names = [f"class_{c}" for c in range(k)]
    start = time.perf_counter()
    report = write_plots(anns, dets, names, tmp_path)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, elapsed
    assert 0 < report["best_f1"] <= 1 and 0 <= report["best_conf"] <= 1
    assert report["confusion_matrix"].shape == (k + 1, k + 1)
    assert all(p.is_file() for p in report["paths"].values())
