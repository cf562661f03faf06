"""Smoke tests of benchmarks/train_step.py, inference.py and profile_step.py: each runs with --quick, in this
process (no interpreter start per script), and writes its JSON. No figures are asserted beyond being measured; the
equal-work checks (same weights, same first losses, same detections) are asserted because they make the ratio
meaningful."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the smoke runs need no speed, and with two threads on two busy cores every parallel
    region waits for a descheduled thread (15 s instead of 0.9 s per step, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def check_rows(data: dict, archs: list[str]) -> None:
    assert [r["arch"] for r in data["results"]] == archs
    assert {"platform", "torch", "torchvision", "device"} <= data["machine"].keys()
    for row in data["results"]:
        for side in ("ours", "torchvision"):
            assert row[side]["median_img_s"] > 0 and row[side]["rounds"] == 2
            assert row[side]["min_img_s"] <= row[side]["median_img_s"] <= row[side]["max_img_s"]
        assert row["ratio"] == pytest.approx(row["ours"]["median_img_s"] / row["torchvision"]["median_img_s"])


def test_train_step_quick_writes_json_and_both_sides_compute_the_same_losses(tmp_path: Path, capsys) -> None:
    out = tmp_path / "t.json"
    load("train_step").main(["--quick", "--archs", "retinanet,fcos,faster_rcnn", "--out", str(out)])
    data = json.loads(out.read_text())
    check_rows(data, ["retinanet", "fcos", "faster_rcnn"])
    first = {r["arch"]: r["first_losses"] for r in data["results"]}
    # identical weights and batches: the one-stage losses agree term by term (Faster R-CNN samples at random)
    assert sum(first["fcos"]["ours"].values()) == pytest.approx(sum(first["fcos"]["torchvision"].values()), rel=1e-4)
    assert sum(first["retinanet"]["ours"].values()) == pytest.approx(
        sum(first["retinanet"]["torchvision"].values()), rel=0.05)
    assert "| detector | ours img/s (min–max) |" in capsys.readouterr().out


def test_inference_quick_writes_json_and_detections_agree(tmp_path: Path) -> None:
    out = tmp_path / "i.json"
    load("inference").main(["--quick", "--archs", "retinanet,faster_rcnn", "--out", str(out)])
    data = json.loads(out.read_text())
    check_rows(data, ["retinanet", "faster_rcnn"])
    retina = data["results"][0]["agreement"]
    assert retina["torchvision_detections"] > 0 and retina["matched_share"] > 0.9


def test_profile_step_quick_writes_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    data = load("profile_step").main(["--quick", "--model", "retinanet_r50_fpn", "--out", str(out)])
    assert json.loads(out.read_text())["share"] == data["share"]
    assert set(data["ms_per_step"]) == {"data", "backbone", "neck", "head", "assignment", "loss", "head_other",
                                        "backward", "optimizer"}
    for phase in ("backbone", "neck", "head", "assignment", "loss", "backward", "optimizer"):
        assert data["ms_per_step"][phase] > 0, phase
    assert sum(data["share"].values()) == pytest.approx(1.0)
