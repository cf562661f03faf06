#!/usr/bin/env python
"""Is training waiting for data? The data loader's images/s for every pipeline preset (configs/pipeline/*.yaml) at
0, 2 and 4 workers, and the share of a real training step spent blocked on the loader.

    python benchmarks/data_pipeline.py                      # CPU: every preset, W=0,2,4; resnet50_fpn share (5-10 min)
    python benchmarks/data_pipeline.py --workers 0,2,4,8 --share-workers 8 --share-images 640x480   # on a GPU
    python benchmarks/data_pipeline.py --quick --out /tmp/d.json   # smoke run: tiny sizes, no table claims

Two measurements, both on generated shapes-style images (the image sets of benchmarks/pipeline.py, whose helpers
this script imports rather than repeats):

* Loader throughput. Each preset is composed like a training run (`pipeline=<preset> dataset.root=<generated>`),
  its dataset built as `build_trainer` builds it, with every augmentation at full strength (GridMask's ramp
  over, Mosaic/MixUp on), and fed through `build_dataloader(ds, batch_size=8, num_workers=W, shuffle=True)`:
  one full epoch of batches (collate included) after a warm-up that starts the workers, the best of --repeats
  epochs (`pipeline.through_loader`). The main process runs one torch thread, like a loader worker; with W=0 it
  is the one doing the work. This is the ceiling the loader puts on training: a model that consumes images faster
  than this waits for data whatever the GPU.
* Data-wait share. A real training run: `build_trainer` on `model=--model pipeline=--share-preset
  dataset.num_workers=--share-workers`, one epoch of --share-iters iterations on `--device` (torch's default
  threads on a CPU), the pipeline at full strength as above (`pipeline.close_mosaic_epochs=0`, no GridMask ramp).
  The runner itself times, per log window, the time blocked on `next(loader)` (`data_time`) and the wall time per
  optimizer step (`step_time`); both land in the run's metrics.jsonl (`Window.timing`, the Progress callback), and
  this script reads them back. The share is sum(data_time × steps) / sum(step_time × steps) over the windows after
  the first (the first holds the workers' start-up and the first, slow iterations).

On a CPU the loader workers and the model compete for the same cores, so the share measures that contention as
much as the pipeline's cost; on a GPU it is the honest "is the GPU starved" figure (run with --share-workers 8 and
the 640x480 images there). Throughputs are the best of repeated runs (other processes only ever slow a run down);
the JSON keeps every run and the load average, to judge the noise.

Prints Markdown tables and writes JSON to benchmarks/results/data_pipeline.json (or --out). Not part of the tests.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _load_pipeline_benchmark() -> ModuleType:
    """benchmarks/pipeline.py as a module (benchmarks/ is not a package): its image sets and measuring helpers."""
    spec = importlib.util.spec_from_file_location("benchmark_pipeline", Path(__file__).with_name("pipeline.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # picklable functions, should a loader use the spawn start method
    spec.loader.exec_module(module)
    return module


bench = _load_pipeline_benchmark()

from framework.config import CONFIG_DIR  # noqa: E402
from framework.config.cli import check_overrides  # noqa: E402
from framework.config.validation import group_options  # noqa: E402
from framework.data.datasets.shapes import generate_shapes  # noqa: E402
from framework.engine.build import build_trainer  # noqa: E402
from framework.engine.setup import resolve_device  # noqa: E402

QUICK_MODEL = "yolo_cspdarknet_s"  # the fastest model config to build and step on a CPU


# ------------------------------------------------------------------------------------------------ loader throughput
def loader_rows(presets: list[str], sets: list[str], roots: dict[str, Path], workers: list[int],
                args: argparse.Namespace) -> list[dict[str, Any]]:
    """img/s of `build_dataloader` for every preset, image set and worker count (`pipeline.through_loader`)."""
    rows = []
    for preset in presets:
        for name in sets:
            ds, max_epochs = bench.build_dataset(preset, roots[name], bench.IMAGE_SETS[name][2])
            epoch = bench.full_strength(ds, max_epochs)
            row: dict[str, Any] = {
                "preset": preset, "images": name, "samples": args.samples[name],
                "applied": ds.pipeline.epoch_summary() if hasattr(ds.pipeline, "epoch_summary") else {},
                "loader": {str(w): bench.through_loader(ds, w, args.batch_size, epoch, args.seed, args.repeats)
                           for w in workers}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ data-wait share
def share_overrides(args: argparse.Namespace, data_root: Path, work_dir: Path) -> list[str]:
    """The training run of the share measurement: one epoch of exactly --share-iters batches (the generated set
    holds iters × batch images), quiet, no plots, the preset's image-set sizes (or --share-size)."""
    sizes = list(bench.IMAGE_SETS[args.share_images][2])
    if args.share_size is not None:  # longer side / YOLO canvas S, shorter side 3/4 S (640 -> 480/640/640)
        s = args.share_size
        sizes = [f"dataset.min_size={s * 3 // 4}", f"dataset.max_size={s}", f"dataset.img_size={s}"]
    return [f"model={args.model}", f"pipeline={args.share_preset}", f"dataset.root={data_root}", *sizes,
            f"dataset.batch_size={args.share_batch}", "dataset.val_batch_size=2",
            f"dataset.num_workers={args.share_workers}", f"trainer.device={args.device}", "trainer.max_epochs=1",
            f"trainer.log_interval={args.share_log_interval}", "trainer.progress_bar=false", "trainer.vis_images=0",
            "evaluation.plots=false", f"seed={args.seed}", "experiment_name=data_pipeline_share",
            f"work_dir={work_dir}"]


def full_strength(cfg: DictConfig) -> list[str]:
    """Set the preset's augmentations to full strength from the first epoch of a one-epoch run, in place (cheaper
    than composing again): Mosaic/MixUp not closed (close-mosaic would cover the only epoch), GridMask without its
    probability ramp. Returns the equivalent overrides, for the record."""
    extra = []
    if "close_mosaic_epochs" in cfg.pipeline:
        extra.append("pipeline.close_mosaic_epochs=0")
    if "gridmask" in cfg.pipeline and "ramp_epochs" in cfg.pipeline.gridmask:
        extra.append("pipeline.gridmask.ramp_epochs=0")
    for override in extra:
        key, value = override.split("=")
        OmegaConf.update(cfg, key, int(value))
    return extra


def window_share(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The data-wait share of the runner's train windows after the first, each weighted by its optimizer steps
    (the records hold per-step means and the iteration count at the window's end)."""
    train = [r for r in records if r["mode"] == "train"]
    ends = [r["iter"] for r in train]
    steps = [b - a for a, b in zip([0, *ends[:-1]], ends)]
    kept = list(zip(train, steps))[1:]
    if not kept:
        raise SystemExit("only one log window: raise --share-iters or lower --share-log-interval")
    data = sum(r["data_time"] * n for r, n in kept)
    step = sum(r["step_time"] * n for r, n in kept)
    images = sum(r["images_per_s"] * r["step_time"] * n for r, n in kept)
    n_steps = sum(n for _, n in kept)
    return {"data_share": data / step, "data_time_s": data / n_steps, "step_time_s": step / n_steps,
            "images_per_s": images / step, "iterations_timed": n_steps, "iterations": ends[-1],
            "windows": [{"iter": r["iter"], "steps": n, "data_share": r["data_share"], "data_time": r["data_time"],
                         "step_time": r["step_time"], "images_per_s": r["images_per_s"]}
                        for r, n in zip(train, steps)]}


def share_run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Train --share-iters iterations with the runner and read its data/step times back from metrics.jsonl."""
    gen_kwargs = bench.IMAGE_SETS[args.share_images][1]
    data_root = generate_shapes(tmp / "share_data", num_train=args.share_iters * args.share_batch, num_val=2,
                                seed=args.seed, **gen_kwargs)
    work_dir = tmp / "share_run"
    overrides = share_overrides(args, data_root, work_dir)
    cfg = check_overrides("train", overrides)
    overrides += full_strength(cfg)
    cfg.callbacks.metrics_log.plot = False  # results.png (matplotlib, seconds of wall time) is not needed here
    runner = build_trainer(cfg)
    start = time.perf_counter()
    runner.fit()
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines()]
    applied = next(({k: v for k, v in r.items() if k not in ("mode", "epoch")}
                    for r in records if r["mode"] == "pipeline"), {})
    result = {"model": args.model, "preset": args.share_preset, "images": args.share_images,
              "min_size": int(cfg.dataset.min_size), "max_size": int(cfg.dataset.max_size),
              "img_size": int(cfg.dataset.img_size), "batch_size": args.share_batch, "workers": args.share_workers,
              "device": str(runner.device), "torch_threads": torch.get_num_threads(),
              "log_interval": args.share_log_interval, "overrides": [o for o in overrides if "=" + str(tmp) not in o],
              "applied": applied, "wall_s": wall, **window_share(records)}
    return result


# ------------------------------------------------------------------------------------------------ the report
def print_tables(rows: list[dict[str, Any]], share: dict[str, Any], workers: list[int], batch_size: int) -> None:
    cols = " | ".join(f"W={w}" for w in workers)
    print(f"\nLoader img/s (build_dataloader, batch {batch_size}, collate included, augmentations at full strength; "
          f"total (per worker))\n\n| preset | images | {cols} |\n|---|---|" + "---|" * len(workers))
    for r in rows:
        cells = " | ".join(f"{r['loader'][str(w)]['img_s']:.0f} ({r['loader'][str(w)]['per_worker_img_s']:.0f})"
                           for w in workers)
        print(f"| `{r['preset']}` | {bench.IMAGE_SETS[r['images']][0]} | {cells} |")
    s = share
    size = f"{s['min_size']}/{s['max_size']}/{s['img_size']}"
    print(f"\nData-wait share of a training step (runner's data_time / step_time, {s['iterations_timed']} of "
          f"{s['iterations']} iterations, first log window excluded)\n\n| model | preset | images | min/max/img size | "
          "batch | "
          "workers | device | step (s) | data wait (s/step) | data-wait share | train img/s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| `{s['model']}` | `{s['preset']}` | {bench.IMAGE_SETS[s['images']][0]} | {size} | {s['batch_size']} | "
          f"{s['workers']} | {s['device']} ({s['torch_threads']} threads) | {s['step_time_s']:.3f} | "
          f"{s['data_time_s']:.3f} | {100 * s['data_share']:.1f}% | {s['images_per_s']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default=None, help="comma-separated pipeline configs of the loader table (all)")
    p.add_argument("--sets", default="640x480,shapes",
                   help=f"image sets of the loader table, of {', '.join(bench.IMAGE_SETS)}")
    p.add_argument("--samples", type=bench.parse_samples, default=bench.parse_samples("160,96"),
                   help="images per loader epoch: N (both sets) or SHAPES,640x480 (default 160,96)")
    p.add_argument("--workers", default="0,2,4", help="num_workers values of the loader table")
    p.add_argument("--batch-size", type=int, default=8, help="batch of the loader table")
    p.add_argument("--repeats", type=int, default=3, help="timed loader epochs; the best is reported")
    p.add_argument("--model", default="resnet50_fpn", help="model config of the data-wait share run")
    p.add_argument("--share-preset", default="yolo_style", help="pipeline config of the share run")
    p.add_argument("--share-workers", type=int, default=2, help="dataset.num_workers of the share run (GPU: 8)")
    p.add_argument("--share-images", default="shapes", choices=list(bench.IMAGE_SETS),
                   help="image set of the share run, at that set's dataset sizes (GPU: 640x480)")
    p.add_argument("--share-size", type=int, default=None,
                   help="share run: longer side and YOLO canvas S (min_size 3/4 S); default: the image set's sizes")
    p.add_argument("--share-batch", type=int, default=8, help="dataset.batch_size of the share run")
    p.add_argument("--share-iters", type=int, default=30, help="iterations of the share run (one epoch)")
    p.add_argument("--share-log-interval", type=int, default=5, help="iterations per runner log window")
    p.add_argument("--device", default="auto", help="trainer.device of the share run: auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: 640x480 set only, 4 images, W=0,2, a {QUICK_MODEL} share run of 3 iterations "
                        "at 64 px")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "data_pipeline.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # W above the CPU count is asked for on purpose (the table shows what it costs): no warning per loader
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    if args.quick:
        args.sets, args.samples, args.workers = "640x480", {"shapes": 8, "640x480": 4}, "0,2"
        args.batch_size, args.repeats = 2, 1
        args.model, args.share_size, args.share_batch = QUICK_MODEL, 64, 2
        args.share_iters, args.share_log_interval = 3, 1
    presets = args.presets.split(",") if args.presets else group_options(CONFIG_DIR, "pipeline")
    sets = args.sets.split(",")
    unknown = [s for s in sets if s not in bench.IMAGE_SETS]
    if unknown:
        p.error(f"--sets: unknown {unknown}; choose from {list(bench.IMAGE_SETS)}")
    workers = [int(w) for w in args.workers.split(",")]
    if args.share_iters < 2 * args.share_log_interval:
        p.error("--share-iters must cover at least two log windows (the first is warm-up)")
    device = resolve_device(args.device)
    train_threads = torch.get_num_threads()
    print(f"{torch.get_num_threads()} torch threads by default, {os.cpu_count()} CPUs, share run on {device}",
          flush=True)

    load_start = bench.load_avg()
    tmp = Path(tempfile.mkdtemp(prefix="data_pipeline_bench_"))
    try:
        torch.set_num_threads(1)  # the loader table: the main process works like one loader worker
        roots = {name: generate_shapes(tmp / name, num_train=args.samples[name], num_val=0, seed=args.seed,
                                       **bench.IMAGE_SETS[name][1]) for name in sets}
        rows = loader_rows(presets, sets, roots, workers, args)
        torch.set_num_threads(train_threads)  # the share run: training as tools/train.py runs it
        share = share_run(args, tmp)
        print(json.dumps({k: v for k, v in share.items() if k != "windows"}), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "settings": {"presets": presets, "sets": sets, "samples": args.samples, "workers": workers,
                     "batch_size": args.batch_size, "repeats": args.repeats, "seed": args.seed, "quick": args.quick,
                     "loader_torch_threads": 1,
                     "augmentation": "full strength: GridMask ramp over, Mosaic/MixUp on (no close-mosaic)",
                     "share": {"model": args.model, "preset": args.share_preset, "images": args.share_images,
                               "size": args.share_size, "batch_size": args.share_batch, "workers": args.share_workers,
                               "iterations": args.share_iters, "log_interval": args.share_log_interval,
                               "device": args.device}},
        "machine": {**bench.machine_info(load_start), "device": str(device),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "torch_threads": train_threads},
        "date": time.strftime("%Y-%m-%d"),
        "loader": rows,
        "data_wait": share}, indent=2))
    print_tables(rows, share, workers, args.batch_size)
    print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
