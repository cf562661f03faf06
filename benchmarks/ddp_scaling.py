#!/usr/bin/env python
"""Training throughput with 1 and 2 (or more) processes under torchrun: how far data parallelism scales here.

    python benchmarks/ddp_scaling.py                       # CPU: 1 and 2 processes, ~6 min on 2 cores
    python benchmarks/ddp_scaling.py --device cuda --procs 1,2,4,8 --model resnet50_fpn --img-size 640
    python benchmarks/ddp_scaling.py --quick --out /tmp/d.json  # smoke run

Each setting is a real `torchrun --standalone --nproc_per_node=N tools/train.py …` run of one epoch on a generated
shapes dataset (weak scaling: the batch per process is fixed, so the global batch grows with N, as when adding
GPUs). Images/s are the runner's own figures from metrics.jsonl (images of all ranks over wall time of each log
window), the median over the windows after the first (warm-up); the data-wait share comes from the same records.
On a CPU the processes share the machine's cores: each gets cores/N threads, so perfect scaling is 1.0x and
anything above it comes from better core utilisation; the figure shows the cost of the gradient all-reduce.

Prints a Markdown table and writes JSON to benchmarks/results/ddp_scaling.json (or --out). Not part of the tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framework.data.datasets.shapes import generate_shapes  # noqa: E402


def run_setting(procs: int, args: argparse.Namespace, data_root: Path, out_root: Path) -> dict[str, Any]:
    threads = max(1, (os.cpu_count() or 1) // procs) if args.device == "cpu" else 4
    run_dir = out_root / f"procs{procs}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
           "tools/train.py", f"model={args.model}", *([f"model/backbone={args.backbone}"] if args.backbone else []),
           "dataset=shapes", f"dataset.root={data_root}",
           f"dataset.batch_size={args.batch_per_process * procs}", f"dataset.val_batch_size={procs}",
           f"dataset.num_workers={args.workers}", f"dataset.min_size={args.img_size}",
           f"dataset.max_size={args.img_size * 3 // 2}", "trainer.max_epochs=1", f"trainer.log_interval={args.log_interval}",
           f"trainer.device={args.device}", f"trainer.precision={args.precision}", "trainer.progress_bar=false",
           "trainer.vis_images=0", "evaluation.plots=false", "scheduler.warmup_iters=10", "model.head.score_thr=0.05",
           f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"torchrun with {procs} processes failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["mode"] == "train"][1:]  # the first window holds start-up and warm-up
    if not train:
        raise SystemExit(f"no log windows after warm-up with {procs} processes; lower --log-interval")
    return {
        "procs": procs,
        "threads_per_process": threads,
        "global_batch": args.batch_per_process * procs,
        "images_per_s": statistics.median(r["images_per_s"] for r in train),
        "images_per_s_windows": [r["images_per_s"] for r in train],
        "data_share": statistics.median(r["data_share"] for r in train),
        "iterations": train[-1]["iter"],
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", default="resnet50_fpn", help="a configs/model option")
    parser.add_argument("--backbone", default="resnet18", help="a configs/model/backbone option ('' keeps the model's)")
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--batch-per-process", type=int, default=4)
    parser.add_argument("--images", type=int, default=320, help="training images (one epoch is timed)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 32 images of 64 px, mobilenet_v3_fpn, no table claims")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ddp_scaling.json")
    args = parser.parse_args()
    if args.quick:
        args.images, args.img_size, args.log_interval, args.workers = 32, 64, 2, 0
        args.model, args.backbone = "mobilenet_v3_fpn", ""  # the smallest model: start-up, not training, dominates
    procs = [int(p) for p in args.procs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        data_root = Path(tmp) / "shapes"
        generate_shapes(data_root, num_train=args.images, num_val=max(procs) * 2, seed=0)
        results = [run_setting(n, args, data_root, Path(tmp) / "runs") for n in procs]
    base = results[0]["images_per_s"]
    for r in results:
        r["speedup"] = r["images_per_s"] / base
        r["efficiency"] = r["speedup"] / (r["procs"] / results[0]["procs"])
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    backbone = f" + {args.backbone} backbone" if args.backbone else ""
    print(f"| processes | global batch | images/s | speed-up | data wait |  ({args.model}{backbone}, {args.img_size} "
          f"px, {args.device}, {args.precision})")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['procs']} | {r['global_batch']} | {r['images_per_s']:.1f} | {r['speedup']:.2f}x | "
              f"{100 * r['data_share']:.0f}% |")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
