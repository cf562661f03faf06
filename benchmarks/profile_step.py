#!/usr/bin/env python
"""Where the time of one training step goes: data wait, backbone, neck, head (convolutions), assignment, loss, the
rest of the head's loss code, backward and the optimizer, from `torch.profiler` over real training steps.

    python benchmarks/profile_step.py                                  # model=resnet50_fpn, 640x480 shapes images
    python benchmarks/profile_step.py --model faster_rcnn_r50_fpn --steps 8 --workers 2
    python benchmarks/profile_step.py --quick --out /tmp/p.json        # smoke run, no claims

The run is built like `tools/train.py` builds it (`build_trainer` on `model=<model> pipeline=<preset>` over
generated shapes images of 640×480, `dataset.min_size`/`max_size` as given), so the loader, the pipeline, the
model and the optimizer are the ones a user trains with. Each phase is a `torch.profiler.record_function` range,
put around the modules' and helpers' calls from outside (no profiling code in the framework); a phase's time is
the sum of its ranges over the profiled steps, after `--warmup` steps. On a GPU the ranges synchronize the device
so that they measure its work. Prints a Markdown table and writes JSON to benchmarks/results/profile_step.json.
"""
from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import load_avg  # noqa: E402
from versus_torchvision import REPO, machine, write_json  # noqa: E402

from framework.config.cli import check_overrides  # noqa: E402
from framework.data.datasets.shapes import generate_shapes  # noqa: E402
from framework.engine.build import build_trainer  # noqa: E402

PHASES = ("data", "backbone", "neck", "head", "assignment", "loss", "head_other", "backward", "optimizer")


def labelled(fn: Callable, name: str, device: torch.device) -> Callable:
    """`fn` inside a profiler range called `name`; on a GPU the device is synchronized at both ends."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        with record_function(name):
            out = fn(*args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        return out
    return wrapper


def instrument(model: torch.nn.Module, device: torch.device) -> None:
    """Ranges around the backbone, the neck, the head's forward (its convolutions), the head's loss, every assigner
    and every loss module the head owns."""
    model.backbone.forward = labelled(model.backbone.forward, "backbone", device)
    model.neck.forward = labelled(model.neck.forward, "neck", device)
    head = model.head
    head.loss = labelled(head.loss, "head_loss", device)
    for module in head.modules():  # Faster R-CNN: the RPN's and the RoI head's forward, assigners and losses too
        if module is not head and type(module).__name__.endswith("Loss"):
            module.forward = labelled(module.forward, "loss", device)
            if hasattr(module, "forward_labels"):  # sigmoid losses: what RetinaNet and FCOS call
                module.forward_labels = labelled(module.forward_labels, "loss", device)
        if hasattr(module, "assigner") and hasattr(module.assigner, "assign"):
            module.assigner.assign = labelled(module.assigner.assign, "assignment", device)
        if hasattr(module, "sampler") and hasattr(module.sampler, "sample"):
            module.sampler.sample = labelled(module.sampler.sample, "assignment", device)
        if module is head or type(module).__name__ in ("RPNHead", "RoIBoxHead"):
            module.forward = labelled(module.forward, "head", device)


def phase_times(prof: profile) -> dict[str, float]:
    """Seconds per phase. Ranges nest (head, assignment and loss run inside head_loss), so head_other is what the
    head's loss code spends outside them: target padding, gathers, encoding."""
    totals: dict[str, float] = {}
    for event in prof.events():
        if event.name in ("data", "backbone", "neck", "head", "assignment", "loss", "head_loss", "backward",
                          "optimizer"):
            totals[event.name] = totals.get(event.name, 0.0) + event.cpu_time_total / 1e6
    out = {name: totals.get(name, 0.0) for name in PHASES}
    out["head_other"] = max(totals.get("head_loss", 0.0) - out["head"] - out["assignment"] - out["loss"], 0.0)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="resnet50_fpn")
    parser.add_argument("--pipeline", default="basic")
    parser.add_argument("--min-size", type=int, default=480)
    parser.add_argument("--max-size", type=int, default=640)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="smoke run: small images, 1 warm-up, 1 step")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "profile_step.json")
    parser.add_argument("overrides", nargs="*", help="more key=value overrides, e.g. trainer.precision=bf16")
    args = parser.parse_args(argv)
    if args.quick:
        args.min_size, args.max_size, args.warmup, args.steps, args.workers = 128, 160, 1, 1, 0
    with tempfile.TemporaryDirectory() as tmp:
        n_images = (args.warmup + args.steps) * args.batch
        side = (args.min_size, args.max_size)
        root = generate_shapes(Path(tmp) / "data", num_train=n_images, num_val=args.batch, image_size=side)
        cfg = check_overrides("train", [
            f"model={args.model}", f"pipeline={args.pipeline}", f"dataset.root={root}", f"trainer.device={args.device}",
            f"dataset.batch_size={args.batch}", f"dataset.num_workers={args.workers}",
            f"dataset.min_size={args.min_size}", f"dataset.max_size={args.max_size}",
            f"dataset.img_size={args.max_size}", "trainer.progress_bar=false", "experiment_name=profile_step",
            f"work_dir={Path(tmp) / 'run'}",
            *args.overrides])
        runner = build_trainer(cfg)
        device, model = runner.device, runner.model
        load_at_start = load_avg()
        instrument(model, device)
        model.train()
        loader = iter(runner.train_loader)
        optimizer = runner.optimizer
        shapes: list[list[int]] = []

        def step() -> None:
            with record_function("data"):
                batch = next(loader).to(device, non_blocking=True)
            shapes.append(list(batch.images.shape))
            with torch.autocast(device.type, dtype=runner.amp_dtype, enabled=runner.amp_dtype is not None):
                losses = runner.train_model(batch.images.contiguous(memory_format=runner.memory_format),
                                            batch.targets, image_sizes=batch.image_sizes)
            loss = sum(losses.values())
            labelled(runner.scaler.scale(loss).backward, "backward", device)()
            labelled(lambda: (runner.scaler.step(optimizer), runner.scaler.update()), "optimizer", device)()
            optimizer.zero_grad(set_to_none=True)

        for _ in range(args.warmup):
            step()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            for _ in range(args.steps):
                step()
        wall = time.perf_counter() - start
    phases = phase_times(prof)
    total = sum(phases.values())
    print("| phase | ms per step | share |\n|---|---|---|")
    for name in PHASES:
        print(f"| {name} | {1000 * phases[name] / args.steps:.0f} | {100 * phases[name] / total:.1f}% |")
    print(f"| total (sum of phases) | {1000 * total / args.steps:.0f} | wall with profiler: "
          f"{1000 * wall / args.steps:.0f} ms |")
    payload = {"benchmark": "profile_step", "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                         for k, v in vars(args).items()},
               "machine": machine(device, load_at_start), "batch_shapes": shapes,
               "ms_per_step": {k: 1000 * v / args.steps for k, v in phases.items()},
               "share": {k: v / total for k, v in phases.items()}, "wall_ms_per_step": 1000 * wall / args.steps}
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
