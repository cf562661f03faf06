#!/usr/bin/env python
"""COCO evaluation speed of the two `CocoEvaluator` backends (evaluation.backend): pycocotools and faster_coco_eval.

    python benchmarks/eval_speed.py                        # 5,000 images x 100 detections, 3 repeats (~8 min)
    python benchmarks/eval_speed.py --images 1000 --repeats 5
    python benchmarks/eval_speed.py --quick --out /tmp/e.json   # smoke run: 200 images, one repeat, no table claims

The data is random but shaped like COCO val2017 with a trained detector's output:

* ground truth: 80 classes with COCO-like imbalance (class k of 1..80 drawn with weight 1/k, so class 1 is the
  most frequent, as "person" is), 1-20 objects per image, sides log-uniform from 4 to 500 px (all three area ranges,
  small < 32² < medium < 96² < large: about 45/23/32 %, COCO val2017 has 41/34/24), 1 % crowd regions,
  640x480-ish images;
* detections: exactly --dets per image (100, detectron2's and mmdetection's cap), float32 XYXY like a model's:
  each ground truth found with probability 0.7 (jittered box, the right class 90 % of the time, score 0.3-1), and
  the rest false positives (half near a ground truth, half anywhere, scores skewed low).

Both backends run through `CocoEvaluator` built once (as the runner does, untimed); each repeat is `reset()`,
`process()` in batches of 8 (the validation loader's batches) and `evaluate()`. Reported, as the median of
--repeats (3): "process + evaluate" (end to end) and "evaluate" alone. The JSON keeps every run, the 12 numbers
of each backend (the script fails if they are not identical) and the load average, to judge the noise: the
machine may be shared, and pycocotools' evaluation is single-threaded Python either way.

Prints a Markdown table and writes JSON to benchmarks/results/eval_speed.json (or --out). Not part of the tests.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pycocotools.coco import COCO  # noqa: E402

from framework.evaluation.coco import BACKENDS, COCO_METRIC_NAMES, CocoEvaluator  # noqa: E402

BATCH_SIZE = 8


def make_ground_truth(num_images: int, num_classes: int, seed: int) -> dict[str, Any]:
    """A COCO-format dict: COCO-like class imbalance, object count, sizes and crowd rate."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_classes + 1)
    weights /= weights.sum()
    images, anns = [], []
    for img_id in range(1, num_images + 1):
        width, height = int(rng.choice([640, 480, 500, 427, 612])), int(rng.choice([480, 640, 375, 427, 333]))
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": width, "height": height})
        n = int(rng.integers(1, 21))
        sides = np.exp(rng.uniform(np.log(4), np.log(500), n))
        aspect = np.exp(rng.uniform(np.log(0.4), np.log(2.5), n))
        ws = np.minimum(sides * np.sqrt(aspect), width - 1)
        hs = np.minimum(sides / np.sqrt(aspect), height - 1)
        xs, ys = rng.uniform(0, width - ws), rng.uniform(0, height - hs)
        cats = rng.choice(num_classes, size=n, p=weights) + 1
        crowd = rng.random(n) < 0.01
        for x, y, w, h, c, cr in zip(xs, ys, ws, hs, cats, crowd):
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": int(c),
                         "bbox": [float(x), float(y), float(w), float(h)],
                         "area": float(w * h * rng.uniform(0.6, 1.0)),  # a polygon's area, below its box's
                         "iscrowd": int(cr)})
    return {"info": {"description": "eval_speed random COCO-like set"}, "images": images,
            "categories": [{"id": c, "name": f"class{c}"} for c in range(1, num_classes + 1)], "annotations": anns}


def make_detections(gt: dict[str, Any], dets_per_image: int, num_classes: int,
                    seed: int) -> list[tuple[int, dict[str, torch.Tensor]]]:
    """(image id, detections) per image: exactly `dets_per_image` float32 XYXY boxes, contiguous labels."""
    rng = np.random.default_rng(seed + 1)
    by_image: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in gt["images"]}
    for ann in gt["annotations"]:
        by_image[ann["image_id"]].append(ann)
    out = []
    for im in gt["images"]:
        width, height = im["width"], im["height"]
        anns = by_image[im["id"]]
        gt_boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        gt_labels = np.array([a["category_id"] - 1 for a in anns], dtype=np.int64)
        found = rng.random(len(anns)) < 0.7
        tp_boxes, tp_labels = gt_boxes[found][:dets_per_image], gt_labels[found][:dets_per_image]
        jitter = rng.normal(0, 0.08, tp_boxes.shape) * np.tile(tp_boxes[:, 2:], 2)  # 8 % of w, h, w, h
        tp_boxes = tp_boxes + jitter
        wrong = rng.random(len(tp_labels)) < 0.1
        tp_labels = np.where(wrong, rng.integers(0, num_classes, len(tp_labels)), tp_labels)
        tp_scores = rng.uniform(0.3, 1.0, len(tp_labels))

        n_fp = dets_per_image - len(tp_labels)
        near = rng.random(n_fp) < 0.5 if len(anns) else np.zeros(n_fp, dtype=bool)
        fp_boxes = np.empty((n_fp, 4))
        sides = np.exp(rng.uniform(np.log(4), np.log(400), n_fp))
        fp_boxes[:, 0], fp_boxes[:, 1] = rng.uniform(0, width, n_fp), rng.uniform(0, height, n_fp)
        fp_boxes[:, 2], fp_boxes[:, 3] = sides * rng.uniform(0.5, 1.5, n_fp), sides * rng.uniform(0.5, 1.5, n_fp)
        if near.any():  # shifted copies of ground truths: overlapping, mostly below the IoU thresholds
            src = gt_boxes[rng.integers(0, len(anns), int(near.sum()))]
            shift = rng.uniform(-0.6, 0.6, (len(src), 2)) * src[:, 2:]
            fp_boxes[near] = np.concatenate([src[:, :2] + shift, src[:, 2:] * rng.uniform(0.6, 1.6, (len(src), 2))], 1)
        fp_labels = np.where(near & (rng.random(n_fp) < 0.5),
                             gt_labels[rng.integers(0, max(len(anns), 1), n_fp)] if len(anns) else 0,
                             rng.integers(0, num_classes, n_fp))
        fp_scores = rng.beta(1.0, 4.0, n_fp)

        xywh = np.concatenate([tp_boxes, fp_boxes])
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + np.maximum(xywh[:, 2:], 1.0)], 1)
        out.append((im["id"], {
            "boxes": torch.from_numpy(xyxy).float(),
            "scores": torch.from_numpy(np.concatenate([tp_scores, fp_scores])).float(),
            "labels": torch.from_numpy(np.concatenate([tp_labels, fp_labels]).astype(np.int64)),
        }))
    return out


def time_backend(ev: CocoEvaluator, dets: list[tuple[int, dict[str, torch.Tensor]]],
                 repeats: int) -> tuple[list[dict[str, float]], dict[str, float]]:
    """`repeats` runs of reset + process (batches of 8) + evaluate; their times and the last run's metrics."""
    runs, metrics = [], {}
    for _ in range(repeats):
        ev.reset()
        t0 = time.perf_counter()
        for start in range(0, len(dets), BATCH_SIZE):
            batch = dets[start:start + BATCH_SIZE]
            ev.process([i for i, _ in batch], [d for _, d in batch])
        t1 = time.perf_counter()
        metrics = ev.evaluate()
        t2 = time.perf_counter()
        runs.append({"process_s": t1 - t0, "evaluate_s": t2 - t1, "total_s": t2 - t0})
        print(f"  {ev.backend}: process {t1 - t0:.2f} s, evaluate {t2 - t1:.2f} s", flush=True)
    return runs, metrics


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def faster_coco_eval_installed() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def load_avg() -> list[float] | None:
    """1, 5 and 15 min load averages: above the CPU count, other processes competed with the measurement."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000, help="validation images (default 5000, COCO val2017's size)")
    p.add_argument("--dets", type=int, default=100, help="detections per image (default 100)")
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per backend; the median is reported")
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, of {', '.join(BACKENDS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: 200 images, one repeat")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "eval_speed.json")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.repeats = 200, 1
    backends = args.backends.split(",")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        p.error(f"--backends: unknown {unknown}; choose from {list(BACKENDS)}")
    skipped = {}
    if "faster_coco_eval" in backends and not faster_coco_eval_installed():
        skipped["faster_coco_eval"] = "not installed: pip install faster-coco-eval"
        backends.remove("faster_coco_eval")
        print("faster_coco_eval is not installed (pip install faster-coco-eval): timing pycocotools only", flush=True)
    torch.set_num_threads(1)

    gt = make_ground_truth(args.images, args.classes, args.seed)
    dets = make_detections(gt, args.dets, args.classes, args.seed)
    coco_gt = COCO()
    coco_gt.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
    label_to_cat = list(range(1, args.classes + 1))
    anns = gt["annotations"]
    data = {"images": args.images, "detections": sum(len(d["scores"]) for _, d in dets),
            "annotations": len(anns), "crowd": sum(a["iscrowd"] for a in anns),
            "small_medium_large": [sum(a["area"] < 32**2 for a in anns),
                                   sum(32**2 <= a["area"] <= 96**2 for a in anns),
                                   sum(a["area"] > 96**2 for a in anns)]}
    print(f"{data['images']} images, {data['annotations']} objects ({data['crowd']} crowd), "
          f"{data['detections']} detections; {args.repeats} repeat(s) per backend", flush=True)

    load_start = load_avg()
    results: dict[str, Any] = {}
    for backend in backends:
        ev = CocoEvaluator(coco_gt, label_to_cat, backend=backend)
        runs, metrics = time_backend(ev, dets, args.repeats)
        results[backend] = {
            key: statistics.median(r[key] for r in runs) for key in ("total_s", "evaluate_s", "process_s")
        } | {"runs": runs, "metrics": metrics}
    identical = None
    if len(results) == 2:
        a, b = (results[k]["metrics"] for k in BACKENDS)
        identical = [a[n] for n in COCO_METRIC_NAMES] == [b[n] for n in COCO_METRIC_NAMES]
    ratio = None
    if len(results) == 2:
        ratio = {key: results["pycocotools"][key] / results["faster_coco_eval"][key]
                 for key in ("total_s", "evaluate_s")}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "settings": {"images": args.images, "dets_per_image": args.dets, "classes": args.classes,
                     "repeats": args.repeats, "batch_size": BATCH_SIZE, "seed": args.seed, "quick": args.quick,
                     "backends": backends, "skipped": skipped, "statistic": "median of repeats"},
        "data": data,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "load_avg_at_start": load_start, "load_avg_at_end": load_avg(),
                    "numpy": np.__version__, "torch": torch.__version__,
                    "pycocotools": version("pycocotools"), "faster_coco_eval": version("faster-coco-eval")},
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
        "identical_metrics": identical,
        "ratio_pycocotools_over_faster": ratio}, indent=2))

    print(f"\nCOCO bbox evaluation of {args.images} images x {args.dets} detections through CocoEvaluator, seconds "
          f"(median of {args.repeats})\n\n| backend | process + evaluate | evaluate |\n|---|---|---|")
    for backend, r in results.items():
        print(f"| {backend} | {r['total_s']:.2f} | {r['evaluate_s']:.2f} |")
    if ratio:
        print(f"| pycocotools / faster_coco_eval | {ratio['total_s']:.1f}x | {ratio['evaluate_s']:.1f}x |")
    if identical is not None:
        print(f"\nSame 12 numbers from both backends: {'yes' if identical else 'NO'} "
              f"(bbox/mAP {results['pycocotools']['metrics']['bbox/mAP']:.4f})")
    print(f"\nWrote {args.out}")
    return 0 if identical is not False else 1


if __name__ == "__main__":
    sys.exit(main())
