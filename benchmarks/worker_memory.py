#!/usr/bin/env python
"""Memory of a COCO training set's loader workers: annotations held as pycocotools dicts vs flat numpy arrays, and
the arrays with masks (a mask model's data).

    python benchmarks/worker_memory.py                        # 50,000 annotations on 10,000 images, 4 workers
    python benchmarks/worker_memory.py --annotations 200000 --images 40000
    python benchmarks/worker_memory.py --quick --out /tmp/w.json   # smoke run: 5,000 annotations, no table claims
    python benchmarks/worker_memory.py --modes dicts,arrays,masks  # and a mask model's data (the stored results)

A forked DataLoader worker starts sharing all of the main process's memory, but every Python object it reads has
its reference count written, so each page holding a pycocotools dict an epoch visits is copied into the worker
("copy-on-read"); a COCO-sized index ends up once per worker. Two storage modes of the same annotation file:

* dicts: the dataset as CocoDetection was before its annotations became arrays (kept here, `DictsCocoDetection`):
  the pycocotools `COCO` index of the parsed JSON, per-sample boxes read from `coco.imgToAnns`;
* arrays: the current `framework.data.datasets.coco.CocoDetection` (`coco_tables`: a few flat arrays);
* masks: the same with `with_masks=True`, as a mask model reads it: the segmentations kept as one packed buffer of
  their JSON text, every sample's masks decoded by its worker (`masks`, N x H x W uint8) and dropped by the collate.

The data is synthetic, shaped like COCO instances files: --images image records (id, file_name, width, height,
license, coco_url, date_captured, flickr_url) all pointing at hard links of one small JPEG, --annotations
annotations spread over them, each with a 16-point polygon `segmentation`, `area`, `iscrowd`, `bbox` (COCO's
polygons are longer; the dicts mode is, if anything, favoured).

Each mode runs in a fresh Python process (so neither inherits the other's heap): it builds the dataset, then a
`DataLoader(num_workers=--workers, persistent_workers=True, multiprocessing_context="fork", batch_size=8)` with a
collate that only sums the boxes (so no image tensor stays alive), iterates one full epoch, and with the workers
still alive reads each process's RSS, PSS and USS (private clean + dirty) from /proc/<pid>/smaps_rollup. Summed over
the main process and the workers: RSS counts every shared page once per process, so it overstates the total; PSS
divides each shared page among the processes sharing it (the honest total); USS is what each process holds alone
(what killing it would free). The two modes must see the same boxes (checked). Linux only.

Prints a Markdown table and writes JSON to benchmarks/results/worker_memory.json (or --out). Not part of the tests.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framework.data.datasets.coco import CocoDetection, decode_rgb, detection_sample  # noqa: E402

MODES = ("dicts", "arrays", "masks")
IMAGE_SIZE = (64, 48)  # width, height of the one JPEG every record points at


# ------------------------------------------------------------------------------------------------ the old storage
class DictsCocoDetection(Dataset):
    """CocoDetection before its annotations became arrays (commit 683a181), reduced to what a training sample needs:
    the pycocotools index of the whole file, ids as a list of ints, boxes read per sample from `imgToAnns`."""

    def __init__(self, ann_file: Path, img_dir: Path) -> None:
        from pycocotools.coco import COCO

        self.img_dir = img_dir
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        self.cat_ids = sorted(int(c) for c in self.coco.getCatIds())
        self.cat_id_to_label = {c: i for i, c in enumerate(self.cat_ids)}
        self.ids = sorted(int(i) for i in self.coco.imgs.keys())

    def __len__(self) -> int:
        return len(self.ids)

    def _load_boxes(self, img_id: int, size: tuple[int, int]) -> tuple[list[list[float]], list[int]]:
        h, w = size
        boxes, labels = [], []
        for ann in self.coco.imgToAnns.get(img_id, []):
            if ann.get("iscrowd", 0):
                continue
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            x1, y1 = min(max(x, 0.0), w), min(max(y, 0.0), h)
            x2, y2 = min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)
            if x2 <= x1 or y2 <= y1:
                continue
            boxes.append([x1, y1, x2, y2])
            labels.append(self.cat_id_to_label[int(ann["category_id"])])
        return boxes, labels

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        img_id = self.ids[index]
        data = decode_rgb(self.img_dir / self.coco.imgs[img_id]["file_name"], f"image_id={img_id}")
        boxes, labels = self._load_boxes(img_id, (int(data.shape[-2]), int(data.shape[-1])))
        return detection_sample(data, boxes, labels, img_id, None)


# ------------------------------------------------------------------------------------------------ data
def make_dataset(root: Path, num_images: int, num_annotations: int, seed: int) -> Path:
    """A COCO-format folder: one JPEG hard-linked `num_images` times and an instances file (returns its path)."""
    rng = np.random.default_rng(seed)
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    w, h = IMAGE_SIZE
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "one.jpg", quality=90)
    images = []
    for image_id in range(1, num_images + 1):
        name = f"{image_id:012d}.jpg"
        try:
            os.link(root / "one.jpg", img_dir / name)
        except OSError:  # a file system without hard links
            shutil.copyfile(root / "one.jpg", img_dir / name)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h, "license": int(rng.integers(1, 8)),
                       "coco_url": f"http://images.cocodataset.org/train2017/{name}",
                       "date_captured": "2013-11-14 16:28:13",
                       "flickr_url": f"http://farm4.staticflickr.com/1/{image_id}_0123456789_z.jpg"})
    owners = np.sort(rng.integers(1, num_images + 1, num_annotations))
    bw = rng.uniform(4, w / 2, num_annotations)
    bh = rng.uniform(4, h / 2, num_annotations)
    x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    cats = rng.integers(1, 81, num_annotations)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    annotations = []
    for k in range(num_annotations):
        cx, cy, rx, ry = x0[k] + bw[k] / 2, y0[k] + bh[k] / 2, bw[k] / 2, bh[k] / 2
        poly = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1).round(2).reshape(-1)
        annotations.append({"id": k + 1, "image_id": int(owners[k]), "category_id": int(cats[k]),
                            "segmentation": [poly.tolist()], "area": round(float(np.pi * rx * ry), 2),
                            "iscrowd": 0, "bbox": [round(float(v), 2) for v in (x0[k], y0[k], bw[k], bh[k])]})
    ann_file = root / "instances_train.json"
    ann_file.write_text(json.dumps({"info": {"description": "worker_memory synthetic COCO"}, "images": images,
                                    "annotations": annotations,
                                    "categories": [{"id": c, "name": f"class{c}", "supercategory": "thing"}
                                                   for c in range(1, 81)]}))
    return ann_file


# ------------------------------------------------------------------------------------------------ measurement
def memory_of(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of one process in MiB, from /proc/<pid>/smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            fields[key] = int(parts[0])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss_mb": fields["Rss"] / 1024, "pss_mb": fields["Pss"] / 1024, "uss_mb": uss / 1024}


def count_boxes(batch: list[tuple[Any, dict[str, Any]]]) -> tuple[int, float, int]:
    """The collate: number of boxes, the sum of their coordinates (to check every mode sees the same boxes) and the
    number of mask pixels (0 without masks)."""
    return (sum(len(t["labels"]) for _, t in batch),
            float(sum(t["boxes"].as_subclass(torch.Tensor).double().sum() for _, t in batch)),
            sum(int(t["masks"].sum()) for _, t in batch if "masks" in t))


def measure(mode: str, ann_file: Path, workers: int, batch_size: int) -> dict[str, Any]:
    """Build the dataset of `mode`, iterate one epoch through forked persistent workers, read the memory."""
    t0 = time.perf_counter()
    img_dir = ann_file.parent / "images"
    ds = DictsCocoDetection(ann_file, img_dir) if mode == "dicts" else CocoDetection(
        str(ann_file.parent), ann_file.name, "images", with_masks=mode == "masks")
    build_s = time.perf_counter() - t0
    before = memory_of(os.getpid())
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, persistent_workers=True,
                        multiprocessing_context="fork", collate_fn=count_boxes)
    t0 = time.perf_counter()
    boxes, coord_sum, mask_pixels = 0, 0.0, 0
    for n, s, m in loader:
        boxes, coord_sum, mask_pixels = boxes + n, coord_sum + s, mask_pixels + m
    epoch_s = time.perf_counter() - t0
    children = multiprocessing.active_children()  # the persistent workers, still alive
    if len(children) != workers:
        raise RuntimeError(f"expected {workers} live workers after the epoch, found {len(children)}")
    procs = [{"role": "main", **memory_of(os.getpid())}]
    procs += [{"role": f"worker {i}", **memory_of(p.pid)} for i, p in enumerate(sorted(children, key=lambda p: p.pid))]
    total = {k: sum(p[k] for p in procs) for k in ("rss_mb", "pss_mb", "uss_mb")}
    return {"build_s": build_s, "epoch_s": epoch_s, "samples": len(ds), "boxes": boxes, "coord_sum": coord_sum,
            "mask_pixels": mask_pixels,
            "main_before_loader": before, "processes": procs, "total": total,
            "workers_uss_mb": sum(p["uss_mb"] for p in procs[1:])}


def run_child(mode: str, ann_file: Path, workers: int, batch_size: int) -> dict[str, Any]:
    """`measure` in a fresh interpreter, so that one mode's heap is not inherited by the other's workers."""
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--ann-file", str(ann_file),
                           "--workers", str(workers), "--batch-size", str(batch_size)],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_avg() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--annotations", type=int, default=50_000)
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--modes", default="dicts,arrays", help=f"comma-separated, of {', '.join(MODES)} (default: "
                                                           "dicts,arrays)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: 5,000 annotations on 1,000 images")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "worker_memory.json")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)  # internal: measure one mode, print JSON
    p.add_argument("--ann-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.ann_file, args.workers, args.batch_size)))
        return 0
    if not Path("/proc/self/smaps_rollup").is_file():
        p.error("needs Linux's /proc/<pid>/smaps_rollup")
    if args.quick:
        args.annotations, args.images = 5_000, 1_000
    modes = args.modes.split(",")
    if [m for m in modes if m not in MODES]:
        p.error(f"--modes: choose from {', '.join(MODES)}")

    load_start = load_avg()
    with tempfile.TemporaryDirectory(prefix="worker_memory_") as tmp:
        t0 = time.perf_counter()
        ann_file = make_dataset(Path(tmp), args.images, args.annotations, args.seed)
        data = {"images": args.images, "annotations": args.annotations,
                "ann_file_mb": ann_file.stat().st_size / 2**20, "generate_s": time.perf_counter() - t0}
        print(f"{args.images} images, {args.annotations} annotations ({data['ann_file_mb']:.1f} MiB of JSON); "
              f"{args.workers} forked persistent workers, batch size {args.batch_size}", flush=True)
        results: dict[str, Any] = {}
        for mode in modes:
            results[mode] = r = run_child(mode, ann_file, args.workers, args.batch_size)
            print(f"  {mode}: built in {r['build_s']:.1f} s, epoch {r['epoch_s']:.1f} s, PSS total "
                  f"{r['total']['pss_mb']:.0f} MiB", flush=True)
    same = None
    if len(results) >= 2:
        a = next(iter(results.values()))
        same = all(b["boxes"] == a["boxes"] and abs(a["coord_sum"] - b["coord_sum"]) <= 1e-6 * abs(a["coord_sum"])
                   for b in results.values())

    def over(num: str, den: str) -> dict[str, float] | None:
        if num not in results or den not in results:
            return None
        n, d = results[num], results[den]
        return ({k: n["total"][k] / d["total"][k] for k in ("rss_mb", "pss_mb", "uss_mb")}
                | {"workers_uss_mb": n["workers_uss_mb"] / d["workers_uss_mb"]})

    ratio, masks_ratio = over("dicts", "arrays"), over("masks", "arrays")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "settings": {"images": args.images, "annotations": args.annotations, "workers": args.workers,
                     "batch_size": args.batch_size, "seed": args.seed, "quick": args.quick, "modes": modes,
                     "start_method": "fork", "persistent_workers": True, "measured": "after one full epoch"},
        "data": data,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "load_avg_at_start": load_start, "load_avg_at_end": load_avg(),
                    "numpy": np.__version__, "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
        "same_boxes": same,
        "ratio_dicts_over_arrays": ratio,
        "ratio_masks_over_arrays": masks_ratio}, indent=2))

    print(f"\nMemory of the main process + {args.workers} loader workers after one epoch, MiB (sums over the "
          f"{args.workers + 1} processes)\n\n| storage | RSS | PSS | USS | USS of the workers | build s | epoch s |"
          "\n|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        t = r["total"]
        print(f"| {mode} | {t['rss_mb']:.0f} | {t['pss_mb']:.0f} | {t['uss_mb']:.0f} | {r['workers_uss_mb']:.0f} | "
              f"{r['build_s']:.1f} | {r['epoch_s']:.1f} |")
    for name, r in (("dicts / arrays", ratio), ("masks / arrays", masks_ratio)):
        if r:
            print(f"| {name} | {r['rss_mb']:.2f}x | {r['pss_mb']:.2f}x | {r['uss_mb']:.2f}x | "
                  f"{r['workers_uss_mb']:.2f}x | | |")
    if same is not None:
        boxes = next(iter(results.values()))["boxes"]
        print(f"\nSame boxes from {'both' if len(results) == 2 else 'all'} modes: {'yes' if same else 'NO'} "
              f"({boxes} boxes)")
    if "masks" in results:
        print(f"Mask pixels decoded by the workers (masks mode): {results['masks']['mask_pixels']}")
    print(f"\nWrote {args.out}")
    return 0 if same is not False else 1


if __name__ == "__main__":
    sys.exit(main())
