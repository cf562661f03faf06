"""tools/convert_ultralytics.py: an ultralytics-layout YOLOv8 state dict (made from our own model, so the test needs no
ultralytics) becomes a checkpoint that the inference API loads with the same weights and ultralytics' input scaling."""
from __future__ import annotations

import importlib.util
from functools import partial

import torch

from framework.inference import Predictor
from framework.models import Detector
from framework.models.backbones import CSPDarknet
from framework.models.convert_ultralytics import to_ultralytics
from framework.models.heads import YOLOHead
from framework.models.necks import PAN


def test_state_dict_becomes_a_checkpoint_the_predictor_loads(repo_root, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("convert_ultralytics", repo_root / "tools" / "convert_ultralytics.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    main = tool.main
    torch.manual_seed(0)
    source = Detector(CSPDarknet(size="n"), partial(PAN), partial(YOLOHead, num_classes=2))
    torch.save({"model": to_ultralytics(source.state_dict()), "names": {0: "cat", 1: "dog"}}, tmp_path / "w.pt")
    out = tmp_path / "converted" / "yolov8n.pth"
    assert main(["--weights", str(tmp_path / "w.pt"), "--out", str(out), "dataset=shapes"]) == 0
    assert "YOLOv8-n with 2 classes (cat, dog)" in capsys.readouterr().out
    predictor = Predictor.from_checkpoint(out)
    assert predictor.classes == ["cat", "dog"]
    loaded = predictor.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
    normalize = predictor.config.pipeline.normalize
    assert list(normalize.mean) == [0, 0, 0] and list(normalize.std) == [1, 1, 1]  # pixels / 255, as ultralytics
    assert main(["--weights", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
