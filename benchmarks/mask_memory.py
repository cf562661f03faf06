#!/usr/bin/env python
"""Memory of instance-mask targets: one training batch of 16 images at 640 px with 100 instances per image.

    python benchmarks/mask_memory.py                          # presets basic and yolo_style, 16 × 640 px × 100
    python benchmarks/mask_memory.py --presets basic --batch 8 --instances 50
    python benchmarks/mask_memory.py --quick --out /tmp/m.json  # smoke run: 2 images at 128 px, no table claims

Masks are N×H×W uint8 per sample (DESIGN.md), decoded from the dataset's compact polygons in `__getitem__` and
carried by every transform, so a batch's mask bytes grow with instances × pixels: 16 × 100 × 640 × 640 is 655 MB
before any augmentation. Mosaic makes it worse (a sample holds the instances of four images until the affine crop
drops those out of view). This script measures it on the real path, each case in a fresh Python process:

* data: a COCO-format folder in a temporary directory: --batch records pointing at hard links of one 640×640 JPEG,
  each with --instances polygon annotations (random star-shaped 12-gons, radius 8–80 px, so most overlap);
* a case: `pipeline=<preset>` composed like a training run (`dataset=coco`, img_size/min_size/max_size = --size),
  its training set built as `build_trainer` builds it (short side --size, no cap) with and without `with_masks=True`, then one batch
  `collate([ds[i] for i in range(batch)])` at full augmentation strength;
* figures: the peak resident memory the batch costs (VmHWM after − VmRSS before; Linux `/proc/self/status`, the
  peak reset with `clear_refs`), the batch's mask bytes, the instances it carries, and the time to build it.

Prints a Markdown table and writes JSON to benchmarks/results/mask_memory.json (or --out). Not part of the tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_coco(root: Path, images: int, instances: int, size: int, seed: int = 0) -> None:
    """A COCO folder of `images` records (hard links of one JPEG) with `instances` polygons each."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True)
    (root / "train").mkdir()
    first = root / "train" / "000000.jpg"
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(first, quality=90)
    records, anns = [], []
    for i in range(images):
        name = f"{i:06d}.jpg"
        if i:
            os.link(first, root / "train" / name)
        records.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        for _ in range(instances):
            cx, cy = rng.uniform(0, size, 2)
            radius = rng.uniform(8, 80) * size / 640
            angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
            r = radius * rng.uniform(0.6, 1.0, 12)
            xs = np.clip(cx + r * np.cos(angles), 0, size - 1)
            ys = np.clip(cy + r * np.sin(angles), 0, size - 1)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1 + len(anns) % 3, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0)),
                         "segmentation": [np.stack([xs, ys], 1).reshape(-1).round(2).tolist()]})
    cats = [{"id": k, "name": name} for k, name in enumerate(("a", "b", "c"), 1)]
    (root / "annotations" / "train.json").write_text(
        json.dumps({"images": records, "annotations": anns, "categories": cats}))


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(root: str, preset: str, with_masks: bool, batch: int, size: int) -> dict[str, Any]:
    """One case, in this (fresh) process."""
    import torch
    from hydra.utils import instantiate

    from framework.config.cli import check_overrides
    from framework.data.loader import collate
    from framework.data.pipeline_dataset import PipelineDataset

    torch.set_num_threads(1)  # as a loader worker
    cfg = check_overrides("train", [
        "dataset=coco", f"dataset.root={root}", f"pipeline={preset}", f"dataset.img_size={size}",
        f"dataset.min_size={size}", "dataset.max_size=null", "dataset.train.ann_file=annotations/train.json",
        "dataset.train.img_dir=train", "dataset.val.ann_file=annotations/train.json", "dataset.val.img_dir=train"])
    raw = instantiate(cfg.dataset.train, with_masks=True) if with_masks else instantiate(cfg.dataset.train)
    ds = PipelineDataset(raw, instantiate(cfg.pipeline.train))
    max_epochs = int(cfg.trainer.max_epochs)
    if hasattr(ds.pipeline, "set_epoch"):
        ds.pipeline.set_epoch(max_epochs, None)  # ramps over, Mosaic/MixUp on
    torch.manual_seed(0)
    ds[0]  # warm-up: imports, caches
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    out = collate([ds[i % len(ds)] for i in range(batch)])
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    masks = [t["masks"] for t in out.targets if "masks" in t]
    return {"preset": preset, "with_masks": with_masks, "peak_mb": (peak - before) / 2**20,
            "mask_mb": sum(m.numel() * m.element_size() for m in masks) / 2**20,
            "instances": int(sum(len(t["labels"]) for t in out.targets)),
            "image_hw": list(out.images.shape[-2:]), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="basic,yolo_style")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="2 images at 128 px with 10 instances")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "mask_memory.json"))
    parser.add_argument("--case", nargs=5, help=argparse.SUPPRESS)  # root preset masks batch size: one case
    args = parser.parse_args(argv)
    if args.case:
        root, preset, masks, batch, size = args.case
        print(json.dumps(measure(root, preset, masks == "1", int(batch), int(size))))
        return 0
    if args.quick:
        args.batch, args.size, args.instances = 2, 128, 10
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_coco(Path(tmp), args.batch, args.instances, args.size)
        for preset in args.presets.split(","):
            for masks in (False, True):
                cmd = [sys.executable, __file__, "--case", tmp, preset, str(int(masks)), str(args.batch),
                       str(args.size)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"\nOne batch of {args.batch} images at {args.size} px, {args.instances} instances per image\n")
    print("| pipeline | masks | instances | mask bytes (MB) | peak memory of the batch (MB) | time (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {'yes' if r['with_masks'] else 'no'} | {r['instances']} | {r['mask_mb']:.0f} | "
              f"{r['peak_mb']:.0f} | {r['seconds']:.2f} |")
    result = {"batch": args.batch, "size": args.size, "instances_per_image": args.instances, "quick": args.quick,
              "rows": rows, "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
              "date": time.strftime("%Y-%m-%d")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
