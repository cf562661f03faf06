"""ONNX export of a prototype-mask head (YOLO-seg): the graph adds `mask_coefficients` and `prototypes` to the
detector's outputs; its fixed-shape post-processing equals the model's `predict` (detections bit for bit, masks
rebuilt from the outputs pixel for pixel), and onnxruntime gives the same detections, coefficients and masks.

A small hand-built backbone keeps tracing short (the graph of CSPDarknet + PAN takes ~25 s to trace on a CPU core,
tests/test_export.py's slow YOLO test); the head is the real `YOLOSegHead`. Untrained, its BatchNorm statistics
are taken from the test images first, class scores are spread so that a few dozen boxes pass the threshold, and
the coefficients so that mask logits are mostly far from 0 (masks neither empty nor full).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from framework.export import ExportWrapper, _pad_batch, export_onnx, verify_onnx
from framework.models import Detector
from framework.models.blocks import ConvNormAct
from framework.models.heads import YOLOSegHead


class TinyBackbone(nn.Module):
    out_channels, strides = [16, 32, 64], [8, 16, 32]

    def __init__(self) -> None:
        super().__init__()
        self.p3 = nn.Sequential(ConvNormAct(3, 16, 3, 2), ConvNormAct(16, 16, 3, 2), ConvNormAct(16, 16, 3, 2))
        self.p4, self.p5 = ConvNormAct(16, 32, 3, 2), ConvNormAct(32, 64, 3, 2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.p3(x)
        p4 = self.p4(p3)
        return [p3, p4, self.p5(p4)]


class PassThrough(nn.Module):
    out_channels, strides = TinyBackbone.out_channels, TinyBackbone.strides

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return feats


# 96x128 and 128x100 pad to 128x128 with the first
SIZES = [(128, 128), (96, 128), (128, 100), (112, 128)]


@pytest.fixture(scope="module")
def images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3, h, w, generator=g).cumsum(-1).div(8) for h, w in SIZES]  # smooth, like pictures


@pytest.fixture(scope="module")
def model(images) -> Detector:
    torch.manual_seed(0)
    head = YOLOSegHead(4, TinyBackbone.out_channels, TinyBackbone.strides, feat_channels=16, stacked_convs=1,
                       proto_channels=16, score_thr=0.2)
    det = Detector(TinyBackbone(), PassThrough(), head).train()
    for m in det.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative: the statistics of the one calibration batch
    with torch.no_grad():
        det.head(det.extract_features(_pad_batch(images)[0]))
        for branch in head.cls_branches:
            nn.init.normal_(branch[-1].weight, std=0.1)
            nn.init.constant_(branch[-1].bias, -2.0)
        for branch in head.coef_branches:
            nn.init.normal_(branch[-1].weight, std=1.0)
    return det.eval()


def test_fixed_shape_outputs_equal_predict(model, images):
    batch, sizes, size_list = _pad_batch(images)
    wrapper = ExportWrapper(model, nms=True)
    assert wrapper.output_names == ["boxes", "scores", "labels", "num_detections", "mask_coefficients", "prototypes"]
    with torch.no_grad():
        expected = model(batch, image_sizes=size_list)
        boxes, scores, labels, num, coefs, protos = wrapper(batch, sizes)
        dense = ExportWrapper(model, nms=False)(batch, sizes)
    k = model.head.postprocess.max_per_img
    assert coefs.shape == (4, k, 32) and protos.shape == (4, 32, 32, 32)
    for i, det in enumerate(expected):
        n = int(num[i])
        assert 0 < n == len(det["scores"]) < k
        order = det["scores"].argsort(descending=True, stable=True)
        torch.testing.assert_close(boxes[i, :n], det["boxes"][order], rtol=0, atol=0)
        assert torch.equal(labels[i, :n], det["labels"][order]) and not coefs[i, n:].any()
        rebuilt = model.head.paste_masks(coefs[i, :n], protos[i], boxes[i, :n], size_list[i], size_list[i])
        assert rebuilt.any() and torch.equal(rebuilt, det["masks"][order])  # the same masks, pixel for pixel
    assert [tuple(t.shape) for t in dense] == [(4, 336, 4), (4, 336, 4), (4, 336, 32), (4, 32, 32, 32)]


def test_onnx_export_matches_pytorch(model, images, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx
    import onnxruntime

    path = export_onnx(model, tmp_path / "seg.onnx", (128, 128), nms=True, dynamic=False)
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert meta["framework.outputs"] == "boxes,scores,labels,num_detections,mask_coefficients,prototypes"
    report = verify_onnx(path, model, images)
    assert report.ok, report.summary()
    assert report.compared >= 20 and report.masks_compared == report.compared
    assert report.mask_mismatch <= 1e-3 and "masks:" in report.summary()

    # the coefficients and prototypes themselves, against the eager graph
    batch, sizes, _ = _pad_batch(images[1:2], fixed=(128, 128))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {"images": batch.numpy(), "image_sizes": sizes.numpy()})))
    with torch.no_grad():
        ref = dict(zip(ExportWrapper(model).output_names, ExportWrapper(model)(batch, sizes)))
    n = int(ref["num_detections"][0])
    assert n > 0 and int(got["num_detections"][0]) == n
    torch.testing.assert_close(torch.from_numpy(got["mask_coefficients"]), ref["mask_coefficients"], atol=1e-4,
                               rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(got["prototypes"]), ref["prototypes"], atol=1e-4, rtol=1e-4)
