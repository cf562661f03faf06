#!/usr/bin/env python
"""The model table of the README: for every model config, parameters, FLOPs at 640x640, CPU train-step time at a
fixed input, and shapes bbox mAP after a fixed short training budget from scratch.

    python benchmarks/model_zoo.py                       # every configs/model/*.yaml (long: tens of minutes per R50)
    python benchmarks/model_zoo.py --models yolo_cspdarknet_s,mobilenet_v3_fpn --epochs 2
    python benchmarks/model_zoo.py --quick               # smoke run: tiny data, one iteration, no table claims

Prints a Markdown table and writes JSON to benchmarks/results/model_zoo.json (or --out). Not part of the tests.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framework.config import CONFIG_DIR  # noqa: E402
from framework.config.cli import check_overrides  # noqa: E402
from framework.config.validation import group_options  # noqa: E402
from framework.data.datasets.shapes import generate_shapes  # noqa: E402
from framework.engine.build import build_trainer  # noqa: E402


def build(model: str, extra: list[str]):
    return check_overrides("train", [f"model={model}", *extra])


def count_flops(model: torch.nn.Module, size: int) -> float:
    """Forward FLOPs (2 per multiply-add) of one image in eval mode, post-processing included."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)))
    return counter.get_total_flops()


def step_time(model: torch.nn.Module, size: int, batch: int, steps: int) -> tuple[float, float]:
    """Median and spread (min-max) in seconds of one SGD step on a fixed synthetic batch."""
    torch.manual_seed(0)
    images = torch.randn(batch, 3, size, size)
    boxes = torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.5, 0.2, 0.9, 0.6], [0.3, 0.6, 0.6, 0.95]]) * size
    targets = [{"boxes": boxes.clone(), "labels": torch.tensor([0, 1, 2])} for _ in range(batch)]
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times), max(times) - min(times)


def train_and_eval(model: str, data_root: Path, work: Path, epochs: int, size: int, batch: int, optimizer: str,
                   lr: float, max_iters: int | None, extra: list[str]) -> tuple[dict, float]:
    overrides = [f"optimizer={optimizer}", f"dataset.root={data_root}", f"trainer.max_epochs={epochs}", f"trainer.eval_interval={epochs}",
                 f"dataset.batch_size={batch}", f"dataset.min_size={size}", f"dataset.max_size={int(size * 1.5)}",
                 "dataset.num_workers=1", f"optimizer.lr={lr}", "scheduler.warmup_iters=100",
                 f"scheduler.milestones=[{max(epochs - 1, 1)}]", "trainer.grad_clip_norm=10.0",
                 "trainer.progress_bar=false", "trainer.log_interval=50", f"experiment_name=zoo_{model}",
                 f"work_dir={work / model}"]
    cfg = build(model, [*overrides, *extra])
    runner = build_trainer(cfg)
    if max_iters is not None:  # --quick: cut the loader short
        runner.train_loader = [b for _, b in zip(range(max_iters), runner.train_loader)]
    start = time.perf_counter()
    result = runner.fit()
    return result["last"], time.perf_counter() - start


def merged(previous: list[dict], rows: list[dict]) -> list[dict]:
    """Previous rows in their order with re-measured models replaced, then the new models."""
    new = {r["model"]: r for r in rows}
    return [new.pop(r["model"], r) for r in previous] + list(new.values())


def settings(args: argparse.Namespace) -> dict[str, str]:
    """What every row of one results file must share: the budget, the optimizer, the timing input, the overrides."""
    return {k: str(v) for k, v in vars(args).items() if k not in ("models", "merge", "out")}


def previous_rows(args: argparse.Namespace) -> list[dict]:
    """Rows already in --out, for --merge; refused when they were measured with other settings."""
    if not (args.merge and args.out.exists()):
        return []
    saved = json.loads(args.out.read_text())
    ours = settings(args)
    differ = {k: (v, ours[k]) for k, v in saved["settings"].items() if k in ours and v != ours[k]}
    if differ:
        sys.exit(f"--merge: {args.out} was measured with other settings (saved, now): {differ}; "
                 "use the same options or another --out")
    return saved["rows"]


def write_json(args: argparse.Namespace, rows: list[dict]) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "settings": settings(args), "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "rows": rows}, indent=2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="comma-separated model configs (default: all)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs on shapes (2000 images) per model")
    p.add_argument("--size", type=int, default=128, help="training/eval shorter side on shapes")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--optimizer", default="adamw", help="optimizer config (configs/optimizer/)")
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--step-size", type=int, default=320, help="square input of the train-step timing")
    p.add_argument("--step-batch", type=int, default=2)
    p.add_argument("--no-train", action="store_true", help="skip the mAP column")
    p.add_argument("--quick", action="store_true", help="smoke run on a tiny dataset")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "model_zoo.json")
    p.add_argument("--set", nargs="*", default=[], metavar="OVERRIDE",
                   help="extra Hydra overrides for every model, e.g. --set model.head.norm=gn")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of other models already in --out (one long model per run)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(torch.get_num_threads())
    models = args.models.split(",") if args.models else group_options(CONFIG_DIR, "model")
    tmp = Path(tempfile.mkdtemp(prefix="model_zoo_"))
    print(f"training runs (config, metrics.jsonl, TensorBoard) go to {tmp / 'runs'}", flush=True)
    if args.quick:
        data_root = tmp / "shapes"
        generate_shapes(data_root, num_train=16, num_val=8, seed=0)
        args.epochs, args.size, args.batch = 1, 64, 4
    else:
        data_root = REPO / "data" / "shapes"
    previous = previous_rows(args)
    rows = []
    for name in models:
        cfg = build(name, ["dataset.num_classes=4", *args.set])
        torch.manual_seed(0)  # the same weights every run: Faster R-CNN's FLOPs depend on the proposals kept
        model = instantiate(cfg.model)
        row = {"model": name, "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
               "backbone": type(model.backbone).__name__, "neck": type(model.neck).__name__,
               "head": type(model.head).__name__}
        row["gflops_640"] = count_flops(model, 64 if args.quick else 640) / 1e9
        med, spread = step_time(model, 64 if args.quick else args.step_size, args.step_batch, 1 if args.quick else 5)
        row.update(step_s=med, step_spread_s=spread)
        if not args.no_train:
            metrics, seconds = train_and_eval(name, data_root, tmp / "runs", args.epochs, args.size, args.batch,
                                              args.optimizer, args.lr, 1 if args.quick else None, args.set)
            row.update(mAP=metrics.get("bbox/mAP"), mAP50=metrics.get("bbox/mAP_50"), train_s=seconds)
        row["date"] = time.strftime("%Y-%m-%d")
        rows.append(row)
        print(json.dumps(row), flush=True)
        write_json(args, merged(previous, rows))  # after every model: a cut-short run keeps what it measured
    header = (f"| model | backbone / neck / head | params (M) | GFLOPs @640 | train step (s, batch {args.step_batch} @"
              f"{args.step_size}²) | shapes mAP / AP50 ({args.epochs} ep @{args.size}px, {args.optimizer}) | "
              "train time |")
    print("\n" + header + "\n|---|---|---|---|---|---|---|")
    for r in merged(previous, rows):
        m = f"{r['mAP']:.3f} / {r['mAP50']:.3f}" if "mAP" in r else "—"
        t = f"{r['train_s'] / 60:.1f} min" if "train_s" in r else "—"
        print(f"| `{r['model']}` | {r['backbone']} / {r['neck']} / {r['head']} | {r['params_M']:.2f} | "
              f"{r['gflops_640']:.1f} | {r['step_s']:.2f} ± {r['step_spread_s'] / 2:.2f} | {m} | {t} |")
    print(f"\nWrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
