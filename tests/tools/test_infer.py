"""tools/infer.py and the `Predictor` API on a checkpoint trained for two epochs: the pictures show exactly the
detections written to detections.json, and those are the detections tools/test.py scores."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.io import read_image

from framework import Predictor
from framework.inference import find_images, load_image
from framework.visualization import draw_detections

from .test_train_and_test import run


@pytest.fixture(scope="module")
def checkpoint(trained_run: Path) -> Path:
    return trained_run / "checkpoints" / "last.pth"


@pytest.fixture(scope="module")
def detector(checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(checkpoint)


def fail(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "tools/infer.py", *args], cwd=repo_root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def as_prediction(detections: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor([d["box"] for d in detections]).reshape(-1, 4),
            "scores": torch.tensor([d["score"] for d in detections]),
            "labels": torch.tensor([d["label"] for d in detections], dtype=torch.int64)}


def near_drawing(height: int, width: int, detections: list[dict[str, Any]]) -> torch.Tensor:
    """Pixels that a detection's outline (3 px margin) or its "name 0.87" tag may touch."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    pen, font = ImageDraw.Draw(Image.new("RGB", (8, 8))), ImageFont.load_default()
    for d in detections:
        x0, y0, x1, y1 = (int(v) for v in d["box"])
        for r0, r1, c0, c1 in ((y0, y0, x0, x1), (y1, y1, x0, x1), (y0, y1, x0, x0), (y0, y1, x1, x1)):
            mask[max(r0 - 3, 0):r1 + 4, max(c0 - 3, 0):c1 + 4] = True
        left, top, right, bottom = pen.textbbox((0, 0), f"{d['name']} {d['score']:.2f}", font=font)
        tag_w, tag_h = right - left + 2, bottom - top + 2
        mask[max(y0 - tag_h - 3, 0):y0 + tag_h + 4, max(x0 - 3, 0):x0 + tag_w + 4] = True  # above, or inside at the top
    return mask


def outline(box: list[float], height: int, width: int) -> list[tuple[int, int]]:
    """Pixels (row, col) on a drawn 2 px box outline whether the drawing truncates or rounds the coordinates."""
    x0, y0, x1, y1 = int(box[0]) + 1, int(box[1]) + 1, int(box[2]), int(box[3])
    ring = {(r, c) for c in range(x0, x1 + 1) for r in (y0, y1)} | {(r, c) for r in range(y0, y1 + 1) for c in (x0, x1)}
    return [(r, c) for r, c in ring if 0 <= r < height and 0 <= c < width]


def test_infer_folder_draws_exactly_the_written_detections(checkpoint, detector, shapes_root, repo_root, tmp_path):
    val = shapes_root / "images" / "val"
    # a threshold keeping at least 3 detections on every image (a one-epoch model's scores are all low)
    top = [p["scores"] for p in detector.predict_batch(find_images(val))]
    thr = int(min(float(s[2]) for s in top) * 1e4) / 1e4
    out = tmp_path / "out"
    proc = run(repo_root, "tools/infer.py", f"checkpoint={checkpoint}", f"input={val}", f"score_thr={thr}",
               f"output={out}")
    assert "8 image(s)" in proc.stdout and "images/s" in proc.stdout and str(out) in proc.stdout

    result = json.loads((out / "detections.json").read_text())
    assert result["checkpoint"] == str(checkpoint) and result["score_thr"] == thr
    assert result["classes"] == ["circle", "square", "triangle", "cross"]
    assert [Path(r["file"]).name for r in result["images"]] == [p.name for p in sorted(val.glob("*.jpg"))]
    assert sorted(p.name for p in out.glob("*.png")) == [p.stem + ".png" for p in sorted(val.glob("*.jpg"))]
    kept, far = 0, 0
    for record in result["images"]:
        raw = load_image(record["file"])
        dets = record["detections"]
        assert (record["height"], record["width"]) == tuple(raw.shape[-2:])
        assert len(dets) >= 3 and all(d["score"] >= thr for d in dets)
        assert all(result["classes"][d["label"]] == d["name"] for d in dets)
        png = read_image(str(out / (Path(record["file"]).stem + ".png")))
        # the picture is the JSON's detections drawn, pixel for pixel …
        assert torch.equal(png, draw_detections(raw, as_prediction(dets), None, result["classes"], thr, len(dets)))
        # … and differs from the image exactly along those boxes: every outline drawn, nothing away from them touched
        changed = (png != raw).any(0)
        for d in dets:
            ring = outline(d["box"], *raw.shape[-2:])
            assert ring and all(changed[r, c] for r, c in ring), d
        away = ~near_drawing(*raw.shape[-2:], dets)
        assert not changed[away].any()
        kept, far = kept + len(dets), far + int(away.sum())
    assert kept >= 24 and far > 1000  # the checks above were not vacuous


def test_detector_matches_test_tool(checkpoint, detector, shapes_root, repo_root, tmp_path):
    thr = 0.03
    run(repo_root, "tools/test.py", f"checkpoint={checkpoint}", "dataset.val_batch_size=1",
        f"model.head.score_thr={thr}", f"hydra.run.dir={tmp_path / 'eval'}")
    results = json.loads((tmp_path / "eval" / "results.bbox.json").read_text())
    coco = json.loads((shapes_root / "annotations" / "instances_val.json").read_text())
    label_of = {c["id"]: detector.classes.index(c["name"]) for c in coco["categories"]}
    api = Predictor.from_checkpoint(checkpoint, overrides={"model": {"head": {"score_thr": thr}}})
    compared = 0
    for image in coco["images"][:2]:
        expected = [r for r in results if r["image_id"] == image["id"]]
        got = api.predict(shapes_root / "images" / "val" / image["file_name"])
        assert len(got["scores"]) == len(expected) > 0
        for box, score, label in zip(got["boxes"].tolist(), got["scores"].tolist(), got["labels"].tolist()):
            match = [r for r in expected if label_of[r["category_id"]] == label and abs(r["score"] - score) < 1e-5
                     and all(abs(a - b) < 1e-4 for a, b in zip(xywh_to_xyxy(r["bbox"]), box))]
            assert len(match) == 1, (box, score, label)
            expected.remove(match[0])
            compared += 1
    assert compared >= 2


def xywh_to_xyxy(b: list[float]) -> list[float]:
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


def test_glob_and_single_file_inputs(checkpoint, shapes_root, repo_root, tmp_path):
    val = shapes_root / "images" / "val"
    run(repo_root, "tools/infer.py", f"checkpoint={checkpoint}", f"input='{val}/00000[1-3].jpg'", "score_thr=0.02",
        f"output={tmp_path / 'glob'}", "batch_size=2")
    images = json.loads((tmp_path / "glob" / "detections.json").read_text())["images"]
    assert [Path(r["file"]).name for r in images] == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert sorted(p.name for p in (tmp_path / "glob").glob("*.png")) == ["000001.png", "000002.png", "000003.png"]

    # one file; no output= puts the results next to the training run, like tools/test.py's eval_<time>
    run(repo_root, "tools/infer.py", f"checkpoint={checkpoint}", f"input={val / '000004.jpg'}", "save_images=false")
    [out] = checkpoint.parent.parent.glob("infer_*")
    result = json.loads((out / "detections.json").read_text())
    assert [Path(r["file"]).name for r in result["images"]] == ["000004.jpg"] and result["score_thr"] == 0.3
    assert not list(out.glob("*.png"))


def test_missing_input_or_checkpoint_fails_clearly(checkpoint, repo_root, tmp_path):
    proc = fail(repo_root, f"checkpoint={checkpoint}", f"input={tmp_path / 'nothing'}", f"output={tmp_path / 'o'}")
    assert f"input={tmp_path / 'nothing'}: no such file or folder" in proc.stderr
    proc = fail(repo_root, f"checkpoint={tmp_path / 'missing.pth'}", f"input={tmp_path}", f"output={tmp_path / 'o'}")
    assert f"Checkpoint not found: {tmp_path / 'missing.pth'}" in proc.stderr
    assert not (tmp_path / "o" / "detections.json").exists()


def test_detector_api(detector, shapes_root):
    paths = find_images(shapes_root / "images" / "val")[:3]
    image = load_image(paths[0])
    by_path, by_tensor = detector.predict(paths[0]), detector.predict(image)
    assert set(by_path) == {"boxes", "scores", "labels", "names"} and len(by_path["scores"]) > 0
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(by_path[key], by_tensor[key])
    assert by_path["names"] == by_tensor["names"] == [detector.classes[k] for k in by_path["labels"].tolist()]
    assert by_path["boxes"].dtype == torch.float32 and by_path["labels"].dtype == torch.int64
    assert (by_path["scores"][:-1] >= by_path["scores"][1:]).all()  # best first
    h, w = image.shape[-2:]
    assert (by_path["boxes"][:, 0::2] <= w).all() and (by_path["boxes"][:, 1::2] <= h).all()  # original pixels

    crops = [load_image(p)[:, :112, :112] for p in paths]  # one size, so the batch adds no padding of its own
    batched = detector.predict_batch(crops)
    assert len(batched) == 3
    for single, together in zip((detector.predict(c) for c in crops), batched):
        assert len(single["scores"]) == len(together["scores"])
        assert_same_detections(single, together)


def assert_same_detections(a: dict, b: dict, box_tol: float = 1e-4, score_tol: float = 1e-5) -> None:
    """Every detection of `a` is one of `b` (same label, box and score within tolerance), one to one.

    A batch of 3 and a batch of 1 run the convolutions with different kernels, so scores differ in their last bits:
    detections whose scores tie that closely may swap places, and at the `max_per_img` cut-off one may swap for
    another; those at the lowest score (within `score_tol`) are therefore allowed to go unmatched."""
    free = torch.ones(len(b["scores"]), dtype=torch.bool)
    floor = min(a["scores"].min(), b["scores"].min()) + score_tol if len(a["scores"]) else 0.0
    for box, score, label in zip(a["boxes"], a["scores"], a["labels"]):
        candidates = free & (b["labels"] == label) & ((b["scores"] - score).abs() <= score_tol) & \
            ((b["boxes"] - box).abs() <= box_tol).all(1)
        if candidates.any():
            free[candidates.nonzero()[0, 0]] = False
        else:
            assert score <= floor, f"no match for label {int(label)} score {float(score):.6f} box {box.tolist()}"
