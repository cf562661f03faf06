"""framework/models/convert_ultralytics.py without ultralytics: our YOLOv8 in ultralytics' key layout and back (a strict
load, the same outputs), the layout and shapes of all five sizes, and how weight files are read. The comparison
with ultralytics' own model (outputs on the same input) needs the package and is recorded in docs/yolo.md."""
from __future__ import annotations

import argparse
import sys
from functools import partial

import pytest
import torch
from safetensors.torch import save_file

from framework.models import Detector
from framework.models.backbones import CSPDarknet
from framework.models.convert_ultralytics import (
    UltralyticsWeightsError, describe, from_ultralytics, load_ultralytics_state, to_ultralytics,
)
from framework.models.heads import YOLOHead
from framework.models.necks import PAN


def yolov8(size: str, num_classes: int = 80) -> Detector:
    """What model=yolo_cspdarknet_s model.backbone.size=… builds (tests/models/test_zoo.py checks the config)."""
    return Detector(CSPDarknet(size=size), partial(PAN), partial(YOLOHead, num_classes=num_classes))


def test_round_trip_is_a_strict_load_with_the_same_outputs():
    torch.manual_seed(0)
    ours = yolov8("n", num_classes=3).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the defaults, so a swapped one would show
        for m in ours.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    theirs = to_ultralytics(ours.state_dict())
    assert theirs["model.22.dfl.conv.weight"].shape == (1, 16, 1, 1)
    expected = {"model.0.conv.weight": (16, 3, 3, 3), "model.2.m.0.cv1.conv.weight": (16, 16, 3, 3),
                "model.9.cv2.conv.weight": (256, 512, 1, 1), "model.12.cv1.conv.weight": (128, 384, 1, 1),
                "model.19.conv.weight": (128, 128, 3, 3), "model.22.cv2.0.0.conv.weight": (64, 64, 3, 3),
                "model.22.cv2.2.2.bias": (64,), "model.22.cv3.1.0.bn.running_var": (64,),
                "model.22.cv3.2.2.weight": (3, 64, 1, 1)}
    assert {k: tuple(theirs[k].shape) for k in expected} == expected
    assert all(k.startswith("model.") and k.split(".")[1].isdigit() for k in theirs)
    assert describe(theirs).size == "n" and describe(theirs).num_classes == 3
    fresh = yolov8("n", num_classes=3).eval()
    fresh.load_state_dict(from_ultralytics(theirs))  # strict
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(ours.head(ours.extract_features(x)), fresh.head(fresh.extract_features(x))):
            assert a == b if isinstance(a, list) else torch.equal(a, b)


@pytest.mark.parametrize("size", ["n", "s", "m", "l", "x"])
def test_every_size_maps_one_to_one(size):
    """ultralytics' shapes for the layers the sizes change: m's width cap (576 at C5), l/x's (512 × widen), the
    neck's C2f depth (3 × deepen) and the head's branch widths."""
    with torch.device("meta"):
        state = yolov8(size).state_dict()
    theirs = to_ultralytics(state)
    assert describe(theirs).size == size and describe(theirs).reg_max == 16
    back = from_ultralytics(theirs)
    assert list(back) == list(state) and all(back[k].shape == state[k].shape for k in state)
    sppf_out = {"n": 256, "s": 512, "m": 576, "l": 512, "x": 640}[size]
    assert theirs["model.9.cv2.conv.weight"].shape[0] == sppf_out
    neck_depth = {"n": 1, "s": 1, "m": 2, "l": 3, "x": 3}[size]
    assert theirs["model.21.cv2.conv.weight"].shape[1] == (2 + neck_depth) * sppf_out // 2
    assert f"model.15.m.{neck_depth - 1}.cv2.conv.weight" in theirs and f"model.15.m.{neck_depth}.cv1.conv.weight" \
        not in theirs
    c3 = {"n": 64, "s": 128, "m": 192, "l": 256, "x": 320}[size]  # box: max(16, c3 // 4, 64); cls: max(c3, 80)
    assert theirs["model.22.cv2.0.0.conv.weight"].shape[0] == max(16, c3 // 4, 64)
    assert theirs["model.22.cv3.0.0.conv.weight"].shape[0] == max(c3, 80)


def test_weight_files_are_read_without_ultralytics(tmp_path, monkeypatch):
    with torch.device("meta"):
        meta = yolov8("n", num_classes=2).state_dict()
    theirs = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in to_ultralytics(meta).items()}
    # what EXTRACT_COMMAND writes: the state dict and the class names
    torch.save({"model": theirs, "names": {0: "cat", 1: "dog"}}, tmp_path / "extracted.pt")
    state, names = load_ultralytics_state(tmp_path / "extracted.pt")
    assert names == ["cat", "dog"] and state.keys() == theirs.keys()
    # a plain state dict, a saved YOLO wrapper's keys (model.model.…), safetensors
    torch.save({f"model.{k}": v for k, v in theirs.items()}, tmp_path / "wrapped.pth")
    unwrapped, no_names = load_ultralytics_state(tmp_path / "wrapped.pth")
    assert list(unwrapped) == list(theirs) and no_names is None
    save_file(theirs, str(tmp_path / "weights.safetensors"))
    assert load_ultralytics_state(tmp_path / "weights.safetensors")[0].keys() == theirs.keys()  # sorted there
    # official checkpoints are pickles of ultralytics' classes: without the package, the way to extract them
    torch.save({"model": argparse.Namespace(a=1)}, tmp_path / "yolov8n.pt")
    monkeypatch.setitem(sys.modules, "ultralytics", None)
    with pytest.raises(UltralyticsWeightsError, match=r"(?s)needs the ultralytics package.*YOLO\('yolov8n.pt'\)"
                                                      r".*yolov8n_state.pt"):
        load_ultralytics_state(tmp_path / "yolov8n.pt")
    with pytest.raises(UltralyticsWeightsError, match="not found"):
        load_ultralytics_state(tmp_path / "missing.pt")


def test_other_models_are_refused_clearly():
    with torch.device("meta"):
        theirs = to_ultralytics(yolov8("n").state_dict())
    with pytest.raises(UltralyticsWeightsError, match="Not a YOLOv8 detection state dict"):
        describe({k: v for k, v in theirs.items() if "dfl" not in k})
    odd = dict(theirs, **{"model.0.conv.weight": torch.empty(24, 3, 3, 3, device="meta")})
    with pytest.raises(UltralyticsWeightsError, match="No YOLOv8 size has a 24-channel stem"):
        describe(odd)
    with pytest.raises(UltralyticsWeightsError, match="No rule maps ultralytics' key 'model.23.proto"):
        from_ultralytics(dict(theirs, **{"model.23.proto.cv1.conv.weight": torch.empty(1, device="meta")}))
