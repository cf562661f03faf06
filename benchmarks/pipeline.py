#!/usr/bin/env python
"""Training-pipeline throughput: images per second per data-loader worker for every pipeline preset
(configs/pipeline/*.yaml), on the shapes images at their native size and on 640×480 images.

    python benchmarks/pipeline.py                              # every preset, both image sets (a few minutes)
    python benchmarks/pipeline.py --presets basic,yolo_style --samples 100,32
    python benchmarks/pipeline.py --quick --out /tmp/p.json    # smoke run: a handful of samples, no table claims

Each preset is composed like a training run (`pipeline=<preset> dataset.root=<generated>`) and its dataset built as
`framework.engine.build.build_trainer` builds it: `PipelineDataset(instantiate(cfg.dataset.train), instantiate(cfg.pipeline.train))`.
Two image sets are generated into a temporary folder:

* shapes: `generate_shapes` at its native size (sides 112–160 px) with the dataset=shapes defaults
  (min_size 128, max_size 192, img_size 160);
* 640x480: shapes-style images of exactly 640×480 with min_size 480, max_size 640, img_size 640 (COCO-like YOLO
  training at 640).

Measured, with the augmentations at full strength (GridMask's ramp over, Mosaic/MixUp on: epoch = trainer.max_epochs
with no close-mosaic):

* per-worker img/s: `ds[i]` in the main process with `torch.set_num_threads(1)`, which is exactly what one
  data-loader worker does (workers run with one thread), after a warm-up, over `--samples` seeded indices;
* loader W=…: `build_dataloader(ds, batch_size=8, num_workers=W, shuffle=True)` (batches include the collate), one
  full epoch over the same images after a warm-up epoch start (workers already up), as total img/s and per worker
  (the main process counts as the one worker when W=0).

Every measurement is the best of --repeats runs (3): on a shared machine other processes only ever slow it down. The
JSON keeps every run and the load average, to judge the noise.

Prints a Markdown table and writes JSON to benchmarks/results/pipeline.json (or --out). Not part of the tests.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from hydra.utils import instantiate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framework.config import CONFIG_DIR  # noqa: E402
from framework.config.cli import check_overrides  # noqa: E402
from framework.config.validation import group_options  # noqa: E402
from framework.data.datasets.shapes import generate_shapes  # noqa: E402
from framework.data.loader import build_dataloader  # noqa: E402
from framework.data.pipeline_dataset import PipelineDataset  # noqa: E402

# name -> (what the table says, generate_shapes keyword arguments, dataset overrides)
IMAGE_SETS: dict[str, tuple[str, dict, list[str]]] = {
    "shapes": ("shapes (112–160 px)", {}, []),
    "640x480": ("640×480", {"image_size": (480, 640)},
                ["dataset.min_size=480", "dataset.max_size=640", "dataset.img_size=640"]),
}


def build_dataset(preset: str, root: Path, overrides: list[str]) -> tuple[PipelineDataset, int]:
    """The training dataset of `pipeline=<preset>` as the runner builds it, and the config's trainer.max_epochs."""
    cfg = check_overrides("train", [f"pipeline={preset}", f"dataset.root={root}", *overrides])
    ds = PipelineDataset(instantiate(cfg.dataset.train), instantiate(cfg.pipeline.train))
    return ds, int(cfg.trainer.max_epochs)


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def full_strength(ds: PipelineDataset, max_epochs: int) -> tuple[int, None]:
    """(epoch, max_epochs) at which every augmentation runs at full probability: ramps over, no close-mosaic."""
    epoch = (max_epochs, None)
    if hasattr(ds.pipeline, "set_epoch"):
        ds.pipeline.set_epoch(*epoch)
    return epoch


def per_worker(ds: PipelineDataset, samples: int, warmup: int, seed: int, repeats: int) -> dict:
    """`ds[i]` in this process (one thread, like a loader worker): img/s over `samples` seeded indices, the best of
    `repeats` identical (same indices, same seed) runs."""
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
    indices = [order[i % len(order)] for i in range(warmup + samples)]
    for i in indices[:warmup]:
        ds[i]
    runs = []
    for _ in range(repeats):
        seed_all(seed)
        times, sizes = [], []
        start = time.perf_counter()
        for i in indices[warmup:]:
            t0 = time.perf_counter()
            image, _ = ds[i]
            times.append(time.perf_counter() - t0)
            sizes.append(tuple(image.shape[-2:]))
        runs.append((time.perf_counter() - start, times, sizes))
    total, times, sizes = min(runs, key=lambda r: r[0])
    return {"img_s": samples / total, "img_s_runs": [samples / r[0] for r in runs],
            "ms_median": 1e3 * statistics.median(times), "ms_max": 1e3 * max(times),
            "out_hw_mean": [round(statistics.mean(s[k] for s in sizes), 1) for k in (0, 1)]}


def through_loader(ds: PipelineDataset, workers: int, batch_size: int, epoch: tuple[int, None], seed: int,
                   repeats: int) -> dict:
    """Timed epochs of `build_dataloader` batches (collate included), the workers already started; the best of
    `repeats` epochs."""
    loader = build_dataloader(ds, batch_size=batch_size, num_workers=workers, shuffle=True, seed=seed)
    loader.batch_sampler.set_epoch(*epoch)
    for _, _batch in zip(range(max(workers, 1)), loader):  # warm-up: start the workers, one batch each
        pass
    rates = []
    for _ in range(repeats):
        it = iter(loader)  # persistent workers: drains the previous epoch, then starts prefetching this one
        start = time.perf_counter()
        images = sum(len(batch) for batch in it)
        rates.append(images / (time.perf_counter() - start))
        del it
    del loader  # shut the workers down
    rate = max(rates)
    return {"img_s": rate, "per_worker_img_s": rate / max(workers, 1), "images": images, "img_s_runs": rates}


def load_avg() -> list[float] | None:
    """1, 5 and 15 min load averages: above the CPU count, other processes competed with the measurement."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info(load_avg_at_start: list[float] | None) -> dict:
    """What the figures depend on: the machine, its load over the run, the library versions."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "load_avg_at_start": load_avg_at_start, "load_avg_at_end": load_avg(),
            "torch": torch.__version__, "torchvision": torchvision.__version__}


def parse_samples(text: str) -> dict[str, int]:
    counts = [int(v) for v in text.split(",")]
    if len(counts) == 1:
        counts *= 2
    if len(counts) != 2 or min(counts) < 1:
        raise argparse.ArgumentTypeError("--samples: N (both image sets) or SHAPES,LARGE, positive")
    return dict(zip(IMAGE_SETS, counts))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default=None, help="comma-separated pipeline configs (default: all)")
    p.add_argument("--sets", default=",".join(IMAGE_SETS), help=f"image sets, of {', '.join(IMAGE_SETS)}")
    p.add_argument("--samples", type=parse_samples, default=parse_samples("160,48"),
                   help="timed samples (and generated images): N, or SHAPES,640x480 (default 160,48)")
    p.add_argument("--warmup", type=int, default=5, help="untimed samples before the per-worker timing")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs (per-worker) and epochs (loader) per measurement; the best is reported")
    p.add_argument("--workers", default="0,2", help="num_workers values of the loader columns")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: a few samples per preset and image set")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pipeline.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.samples, args.warmup, args.batch_size, args.repeats = {"shapes": 8, "640x480": 4}, 1, 2, 1
    presets = args.presets.split(",") if args.presets else group_options(CONFIG_DIR, "pipeline")
    sets = args.sets.split(",")
    unknown = [s for s in sets if s not in IMAGE_SETS]
    if unknown:
        p.error(f"--sets: unknown {unknown}; choose from {list(IMAGE_SETS)}")
    workers = [int(w) for w in args.workers.split(",")]
    torch.set_num_threads(1)  # as in a DataLoader worker; also the main process of the loader runs
    print(f"torch threads: {torch.get_num_threads()} (like a DataLoader worker); {os.cpu_count()} CPUs; "
          f"augmentations at full strength (GridMask ramp over, Mosaic/MixUp on)", flush=True)

    load_start = load_avg()
    tmp = Path(tempfile.mkdtemp(prefix="pipeline_bench_"))
    rows = []
    try:
        roots = {}
        for name in sets:
            roots[name] = generate_shapes(tmp / name, num_train=args.samples[name], num_val=0, seed=args.seed,
                                          **IMAGE_SETS[name][1])
        for preset in presets:
            for name in sets:
                label, _, overrides = IMAGE_SETS[name]
                ds, max_epochs = build_dataset(preset, roots[name], overrides)
                epoch = full_strength(ds, max_epochs)
                row = {"preset": preset, "images": name, "samples": args.samples[name],
                       "applied": ds.pipeline.epoch_summary() if hasattr(ds.pipeline, "epoch_summary") else {}}
                row["per_worker"] = per_worker(ds, args.samples[name], args.warmup, args.seed, args.repeats)
                row["loader"] = {str(w): through_loader(ds, w, args.batch_size, epoch, args.seed, args.repeats)
                                 for w in workers}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "settings": {"presets": presets, "sets": sets, "samples": args.samples, "warmup": args.warmup,
                     "repeats": args.repeats, "workers": workers, "batch_size": args.batch_size, "seed": args.seed,
                     "quick": args.quick,
                     "torch_threads": torch.get_num_threads(),
                     "augmentation": "full strength: epoch=trainer.max_epochs, no close-mosaic"},
        "machine": machine_info(load_start),
        "date": time.strftime("%Y-%m-%d"),
        "results": rows}, indent=2))

    cols = " | ".join(f"loader W={w}" for w in workers)
    print(f"\nimg/s of the training pipeline (one thread per worker; loader: batch {args.batch_size}, collate included,"
          f" total (per worker))\n\n| preset | images | per-worker img/s | {cols} |\n|---|---|---|"
          + "---|" * len(workers))
    for r in rows:
        loader = " | ".join(f"{r['loader'][str(w)]['img_s']:.0f} ({r['loader'][str(w)]['per_worker_img_s']:.0f})"
                            for w in workers)
        print(f"| `{r['preset']}` | {IMAGE_SETS[r['images']][0]} | {r['per_worker']['img_s']:.0f} | {loader} |")
    print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
