"""Inference with a mask model: `Predictor` gives bool masks at the original image size (and RLE on request), and
`tools/infer.py` draws them and writes them to detections.json as COCO RLE. The model is an untrained YOLO-seg n
saved as a converted checkpoint (random weights still give detections, which is all the plumbing needs)."""
from __future__ import annotations

import json
import logging
import runpy
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.io import decode_png, read_file

from framework.config.cli import check_overrides
from framework.config.instantiation import instantiate
from framework.engine.checkpoint import save_converted
from framework.evaluation.masks import decode_rles
from framework.inference import Predictor, load_image


@pytest.fixture(scope="module")
def mask_checkpoint(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = check_overrides("train", ["model=yolo_seg_cspdarknet_s", "model.backbone.size=n", "dataset.num_classes=4",
                                    f"dataset.root={shapes_root}", "model.head.max_per_img=20"])
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    out = tmp_path_factory.mktemp("yolo_seg") / "yolo_seg_n.pth"
    save_converted(model, OmegaConf.to_container(cfg, resolve=False), ["circle", "square", "triangle", "cross"],
                   "an untrained YOLO-seg n (test)", out)
    return out


def val_image(shapes_root: Path) -> Path:
    return sorted((shapes_root / "images" / "val").glob("*.jpg"))[0]


def test_predictor_masks_at_original_size_and_rle(mask_checkpoint: Path, shapes_root: Path) -> None:
    predictor = Predictor.from_checkpoint(mask_checkpoint)
    assert predictor.has_masks
    path = val_image(shapes_root)
    h, w = load_image(path).shape[-2:]
    det = predictor.predict(path, rle=True)
    n = len(det["scores"])
    assert n > 0
    assert det["masks"].dtype == torch.bool and det["masks"].shape == (n, h, w)
    assert len(det["rles"]) == n and all(r["size"] == [h, w] and isinstance(r["counts"], str) for r in det["rles"])
    assert torch.equal(decode_rles(det["rles"], (h, w)), det["masks"])
    assert "rles" not in predictor.predict(path)  # RLE only on request


def test_infer_tool_draws_masks_and_writes_rle(mask_checkpoint: Path, shapes_root: Path, repo_root: Path,
                                               tmp_path: Path, monkeypatch) -> None:
    path = val_image(shapes_root)
    out = tmp_path / "infer"
    monkeypatch.chdir(repo_root)
    monkeypatch.setattr(sys, "argv", ["tools/infer.py", f"checkpoint={mask_checkpoint}", f"input={path}",
                                      f"output={out}", "score_thr=0.0"])
    handlers = logging.getLogger().handlers[:]
    try:
        runpy.run_path(str(repo_root / "tools" / "infer.py"), run_name="__main__")
    finally:  # Hydra configured logging to this test's streams
        logging.getLogger().handlers[:] = handlers
    record = json.loads((out / "detections.json").read_text())["images"][0]
    dets = record["detections"]
    assert dets and all("segmentation" in d for d in dets)
    masks = decode_rles([d["segmentation"] for d in dets], (record["height"], record["width"]))
    expected = Predictor.from_checkpoint(mask_checkpoint).predict(path)["masks"]
    assert torch.equal(masks, expected)
    drawn = decode_png(read_file(str(out / f"{path.stem}.png")))
    assert drawn.shape[-2:] == (record["height"], record["width"])
