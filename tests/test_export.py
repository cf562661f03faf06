"""framework/export.py: the exported graph's post-processing equals the model's own `predict`, and the ONNX export
of the RetinaNet, FCOS and YOLOv8 configs runs in onnxruntime with PyTorch's detections (boxes within 1e-3 px).

Small untrained variants of the configs keep it fast (ResNet-18, narrow towers); the class outputs are re-initialized
so scores spread over (0, 1) and a few dozen boxes per image pass the threshold — a check between two empty
outputs would prove nothing. The trained-checkpoint round trip through tools/export.py is in tests/tools/.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from framework.config import CONFIG_DIR
from framework.export import (
    ExportDependencyError, ExportError, ExportWrapper, VerifyReport, _pad_batch, export_onnx, match_detections,
    verify_onnx,
)
from framework.inference import find_images, load_image

SMALL = ["model/backbone=resnet18", "model.neck.out_channels=64", "model.head.feat_channels=64",
         "model.head.stacked_convs=1", "dataset.num_classes=4"]  # a model built without the runner
# score threshold per config: FCOS scores are sqrt(cls * centerness) with centerness ≈ 0.5 here
THRESHOLDS = {"retinanet_r50_fpn": 0.3, "fcos_r50_fpn": 0.5}
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def build(name: str, shapes_root: Path, *overrides: str) -> torch.nn.Module:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [f"model={name}", *SMALL, f"dataset.root={shapes_root}",
                                f"model.head.score_thr={THRESHOLDS[name]}", *overrides])
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    torch.nn.init.normal_(model.head.cls_out.weight, std=0.1)
    torch.nn.init.constant_(model.head.cls_out.bias, -3.0)
    return model


def build_yolo(shapes_root: Path, reg_max: int | None) -> torch.nn.Module:
    """YOLOv8-n with the DFL head (reg_max 16) or the softplus one (None). Untrained, its activations fade through
    the BatchNorm layers' default statistics, so those are taken from the test pictures first; then class scores
    are spread as in `build`."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", ["model=yolo_cspdarknet_s", "model.backbone.size=n", f"dataset.root={shapes_root}",
                                f"model.head.reg_max={'null' if reg_max is None else reg_max}",
                                "model.head.score_thr=0.2", "dataset.num_classes=4"])
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative: the statistics of the one calibration batch
    with torch.no_grad():
        model.head(model.extract_features(_pad_batch(shapes_images(shapes_root, MIXED))[0]))
        for branch in model.head.cls_branches:
            torch.nn.init.normal_(branch[-1].weight, std=0.1)
            torch.nn.init.constant_(branch[-1].bias, -2.0)
    return model.eval()


def shapes_images(shapes_root: Path, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Val pictures resized to `sizes` and normalized, as the validation pipeline would give them."""
    paths = find_images(shapes_root / "images" / "val")
    return [(TF.resize(load_image(p), list(s), antialias=True).float() / 255 - MEAN) / STD
            for p, s in zip(paths, sizes)]


# padded batches: 96x160 and 128x100 pad to 128x160; both end in a 1-cell P7 column or row
MIXED = [(128, 128), (96, 160), (128, 100), (160, 96)]


@pytest.mark.parametrize("name", ["retinanet_r50_fpn", "fcos_r50_fpn", "yolo_dfl", "yolo_softplus"])
def test_fixed_shape_postprocessing_equals_predict(name, shapes_root):
    model = build_yolo(shapes_root, 16 if name == "yolo_dfl" else None) if name.startswith("yolo") else \
        build(name, shapes_root)
    batch, sizes, size_list = _pad_batch(shapes_images(shapes_root, MIXED))
    with torch.no_grad():
        expected = model(batch, image_sizes=size_list)
        boxes, scores, labels, num = ExportWrapper(model, nms=True)(batch, sizes)
    k = model.head.postprocess.max_per_img
    assert boxes.shape == (4, k, 4) and scores.shape == labels.shape == (4, k) and num.shape == (4,)
    for i, det in enumerate(expected):
        n = int(num[i])
        assert 0 < n == len(det["scores"]) < k  # neither empty nor truncated: the counts are really compared
        order = det["scores"].argsort(descending=True, stable=True)
        torch.testing.assert_close(boxes[i, :n], det["boxes"][order], rtol=0, atol=0)
        torch.testing.assert_close(scores[i, :n], det["scores"][order], rtol=0, atol=0)
        assert torch.equal(labels[i, :n], det["labels"][order])
        assert not boxes[i, n:].any() and not scores[i, n:].any() and (labels[i, n:] == -1).all()


def test_fewer_candidates_than_detections_per_image(shapes_root):
    """More detection slots than candidates (a tiny image): the top-k still exists, the rest is padding."""
    model = build("fcos_r50_fpn", shapes_root, "model.head.max_per_img=5000", "model.head.nms_pre=10")
    batch, sizes, size_list = _pad_batch(shapes_images(shapes_root, [(64, 64)]))
    with torch.no_grad():
        expected = model(batch, image_sizes=size_list)[0]
        boxes, scores, labels, num = ExportWrapper(model, nms=True)(batch, sizes)
    assert boxes.shape == (1, 5000, 4) and int(num[0]) == len(expected["scores"]) <= 50
    assert torch.equal(scores[0, :int(num[0])], expected["scores"].sort(descending=True).values)


def test_unsupported_models_and_settings_are_refused(shapes_root):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", ["model=faster_rcnn_r50_fpn", "model/backbone=resnet18", "dataset.num_classes=4"])
    # the head has no dense_predictions (framework.protocols.ExportableHead); export names no head class itself
    with pytest.raises(ExportError, match=r"one-stage heads.*\(FCOSHead, RetinaHead, YOLOHead, YOLOSegHead\).*FasterRCNNHead, "
                                          "which has no dense_predictions"):
        ExportWrapper(instantiate(cfg.model))
    model = build("retinanet_r50_fpn", shapes_root, "model.head.nms_type=diou")
    with pytest.raises(ExportError, match="nms=false"):
        ExportWrapper(model, nms=True)
    ExportWrapper(model, nms=False)  # dense outputs need no NMS operator
    with pytest.raises(ExportError, match="multiples of 32"):
        export_onnx(model, shapes_root / "x.onnx", (100, 128), nms=False)


def test_match_detections_pairs_reordered_ties_and_reports_missing():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    a = {"boxes": boxes, "scores": torch.tensor([0.5, 0.5, 0.4]), "labels": torch.tensor([0, 1, 2])}
    b = {"boxes": boxes[[1, 0, 2]], "scores": torch.tensor([0.5, 0.5, 0.4]), "labels": torch.tensor([1, 0, 2])}
    assert sorted(match_detections(a, b)) == [(0, 1), (1, 0), (2, 2)]
    assert match_detections(a, a) == [(0, 0), (1, 1), (2, 2)]
    c = {k: v[:2] for k, v in b.items()}  # one detection missing, one with another label
    c["labels"] = torch.tensor([1, 3])
    assert match_detections(a, c) == [(1, 0)]


def test_report_is_strict():
    ok = VerifyReport("detections", 2, compared=10, max_box_diff=5e-4, max_score_diff=5e-5)
    assert ok.ok and "passed" in ok.summary()
    near = VerifyReport("detections", 2, compared=10)
    near.add_boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[5e-4, 0.0, 10.0, 10.0]]))
    assert near.ok
    far = VerifyReport("detections", 2, compared=10)
    far.add_boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[2e-3, 0.0, 10.0, 10.0]]))
    assert not far.ok and far.max_box_diff == pytest.approx(2e-3)
    # the tolerance is relative too (1e-4 x coordinate): 0.09 px passes at x=1000 and would fail at x=10
    big = VerifyReport("detections", 2, compared=10)
    big.add_boxes(torch.tensor([[1000.09, 0.0, 10.0, 10.0]]), torch.tensor([[1000.0, 0.0, 10.0, 10.0]]))
    assert big.ok
    assert not VerifyReport("detections", 2, compared=10, max_score_diff=2e-4).ok
    bad = VerifyReport("detections", 2, compared=10, problems=["image 0: onnxruntime finds 3 detections, PyTorch 4"])
    assert not bad.ok and "FAILED" in bad.summary() and "finds 3" in bad.summary()


# --- ONNX files (need the export extra) ------------------------------------------------------------------------

@pytest.mark.parametrize("name, nms, dynamic", [
    ("fcos_r50_fpn", True, True),        # post-processing in the graph, free batch and image size
    ("fcos_r50_fpn", False, False),      # dense outputs for a user's NMS, a fixed input size
    ("retinanet_r50_fpn", True, False),  # a fixed input size; a threshold some images have no box above
])
def test_onnx_export_matches_pytorch(name, nms, dynamic, shapes_root, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx
    import onnxruntime

    model = build(name, shapes_root, *(["model.head.score_thr=0.45"] if name == "retinanet_r50_fpn" else []))
    path = export_onnx(model, tmp_path / "model.onnx", (128, 128), nms=nms, dynamic=dynamic)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # the temporary file was renamed
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert meta["framework.nms"] == str(nms).lower() and meta["framework.dynamic"] == str(dynamic).lower()

    if dynamic:  # batches of 2 (traced with 2, also fine with 1) of images of several sizes, padded
        images = shapes_images(shapes_root, MIXED)
        report = verify_onnx(path, model, images, batch_size=2)
        assert report.ok, report.summary()
        single = verify_onnx(path, model, images[:1], batch_size=1)
        assert single.ok and single.compared > 0, single.summary()
    else:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape == [1, 3, 128, 128]
        # smaller images are padded to 128x128, larger ones shrunk to fit first
        images = shapes_images(shapes_root, [(128, 128), (128, 128), (96, 112), (200, 150)])
        report = verify_onnx(path, model, images, batch_size=2)  # batch 1, as the graph says
        assert report.ok, report.summary()
        if nms:  # nothing above 0.45 in this one: an empty NMS input
            empty = verify_onnx(path, model, images[1:2])
            assert empty.ok and empty.compared == 0, empty.summary()
    assert report.compared > 0 and report.onnx_ms > 0 and report.torch_ms > 0
    if nms:
        assert report.outputs == "detections" and report.compared >= 3 * 5
    else:
        assert report.outputs == "dense"
        assert report.max_box_diff <= 1e-3 and report.max_score_diff <= 1e-4


@pytest.mark.slow  # tracing YOLOv8's graph takes about 30 s on a CPU core (a dynamic export twice that)
def test_onnx_export_of_the_yolo_dfl_head_matches_pytorch(shapes_root, tmp_path):
    """The DFL decoding (softmax over 16 bins, expectation) and the post-processing in the graph."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = build_yolo(shapes_root, 16)
    path = export_onnx(model, tmp_path / "yolo.onnx", (128, 128), nms=True, dynamic=False)
    # the default tolerance (1e-3 px + 1e-4 x coordinate), as tools/export.py checks: the expectation over 16 bins
    # turns the runtimes' float differences in the logits into ~3e-3 px here, within it
    report = verify_onnx(path, model, shapes_images(shapes_root, [(128, 128), (96, 128), (128, 100)]))
    assert report.ok and report.compared >= 10, report.summary()


def test_missing_extra_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(ExportDependencyError, match=r'onnxruntime is not installed.*pip install -e "\.\[export\]"'):
        verify_onnx(tmp_path / "model.onnx", torch.nn.Linear(1, 1), [torch.zeros(3, 32, 32)])
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ExportDependencyError, match=r"onnxscript is not installed.*\[export\]"):
        export_onnx(torch.nn.Linear(1, 1), tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())
