#!/usr/bin/env python
"""Run a trained checkpoint on images and draw what it finds:

    python tools/infer.py checkpoint=work_dirs/<exp>/<time>/checkpoints/best.pth input=photo.jpg
    python tools/infer.py checkpoint=… input=path/to/folder score_thr=0.5 output=/tmp/infer
    python tools/infer.py checkpoint=… input='data/**/*.jpg' model.head.nms_iou_thr=0.5 save_images=false

The model comes from the config saved in the checkpoint; model/pipeline overrides on the command line replace the
matching parts, as in tools/test.py. Writes `<stem>.png` per image (boxes, class names and scores drawn; a mask
model's masks as translucent fills with outlines) and one `detections.json` (boxes XYXY in original pixels; masks as
COCO RLE under `segmentation`) to `output`, default <run dir>/infer_<time>/. `score_thr` filters
what the model returns: it cannot bring back detections below the model's own `model.head.score_thr`.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torchvision.io import write_png
from tqdm import tqdm

from framework.config.cli import hydra_cli
from framework.config.overrides import merge_saved_config
from framework.config.validation import ConfigError
from framework.engine.setup import resolve_device
from framework.fileio import atomic_write
from framework.inference import Predictor, chunks, find_images, load_image, load_inference_checkpoint
from framework.visualization import draw_detections

# keys of this tool's own run, never merged into the checkpoint's config
OWN_KEYS = ("input", "output", "score_thr", "batch_size", "save_images")


def image_names(paths: list[Path]) -> list[str]:
    """`<stem>.png` per image; `<stem>_<n>.png` when a glob over several folders gives two images one stem, so no
    picture overwrites another."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        names.append(f"{p.stem}.png" if n == 0 else f"{p.stem}_{n}.png")
    return names


def detection_records(det: dict[str, Any]) -> list[dict[str, Any]]:
    """One JSON record per detection; a mask model's carry the mask as `segmentation` (COCO compressed RLE)."""
    records = [{"box": box, "score": score, "label": label, "name": name}
               for box, score, label, name in zip(det["boxes"].tolist(), det["scores"].tolist(),
                                                  det["labels"].tolist(), det["names"])]
    for record, rle in zip(records, det.get("rles", ())):
        record["segmentation"] = rle
    return records


def write_json(path: Path, header: dict[str, Any], images: list[dict[str, Any]]) -> None:
    """`header` and `"images": [...]` with one image per line: readable, yet a folder of thousands stays compact.
    Boxes keep full float precision, so redrawing them reproduces the saved pictures exactly."""
    lines = ",\n".join("  " + json.dumps(r) for r in images)
    text = json.dumps(header, indent=1)[:-2] + f',\n "images": [\n{lines}\n ]\n}}\n'
    with atomic_write(path) as f:
        f.write(text.encode())


@hydra_cli("infer")
def main(cfg: DictConfig) -> None:
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1 (images per forward pass), got batch_size={cfg.batch_size}.")
    ckpt = load_inference_checkpoint(cfg.checkpoint)
    paths = find_images(cfg.input)
    overrides = [o for o in HydraConfig.get().overrides.task if o.split("=", 1)[0].lstrip("+~") not in OWN_KEYS]
    config = merge_saved_config(ckpt["config"], cfg, overrides)
    detector = Predictor.from_config(config, ckpt["model"], ckpt.get("meta", {}).get("classes"),
                                    resolve_device(cfg.trainer.device), cfg.score_thr)
    out = Path(cfg.work_dir)  # = `output` when given (configs/infer.yaml)
    out.mkdir(parents=True, exist_ok=True)

    records, total, start = [], 0, time.perf_counter()
    bar = tqdm(total=len(paths), desc="Inferring", unit="img", file=sys.stderr, dynamic_ncols=True,
               disable=True if len(paths) < 2 or not cfg.trainer.progress_bar else None)
    batches = zip(chunks(paths, cfg.batch_size), chunks(image_names(paths), cfg.batch_size))
    for batch_paths, batch_names in batches:
        images = [load_image(p) for p in batch_paths]
        for path, name, image, det in zip(batch_paths, batch_names, images, detector.predict_batch(images, rle=True)):
            if cfg.save_images:  # every written detection drawn (max_dets), so the picture and the JSON agree
                drawn = draw_detections(image, det, None, detector.classes, cfg.score_thr, len(det["scores"]))
                write_png(drawn, str(out / name))
            records.append({"file": str(path), "height": int(image.shape[-2]), "width": int(image.shape[-1]),
                            "detections": detection_records(det)})
            total += len(det["scores"])
        bar.update(len(batch_paths))
    bar.close()
    elapsed = time.perf_counter() - start

    write_json(out / "detections.json", {"checkpoint": str(cfg.checkpoint), "score_thr": cfg.score_thr,
                                         "classes": detector.classes}, records)
    print(f"{len(paths)} image(s), {total} detection(s) with score >= {cfg.score_thr}, "
          f"{len(paths) / max(elapsed, 1e-9):.1f} images/s on {detector.device}; wrote {out}")


if __name__ == "__main__":
    main()
