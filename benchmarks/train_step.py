#!/usr/bin/env python
"""Training speed against torchvision: images/s of one forward + backward + SGD step, ours and torchvision's, for
RetinaNet, FCOS and Faster R-CNN with ResNet-50-FPN, on identical weights and batches (see versus_torchvision.py
for how the two sides are kept equal).

    python benchmarks/train_step.py                          # CPU defaults: 512x640, batch 2, finetune setting
    python benchmarks/train_step.py --archs retinanet --rounds 20 --setting scratch
    python benchmarks/train_step.py --height 800 --width 1333 --batch 8 --precision bf16   # on a GPU
    python benchmarks/train_step.py --quick --out /tmp/t.json                           # smoke run, no claims

Each side steps the optimizer its users get: ours is built from `optimizer=sgd` as a training run builds it (fused
SGD, no weight decay on norms and biases), torchvision's as its detection references build it
(`torch.optim.SGD(params, lr, momentum=0.9, weight_decay=1e-4)`); `--optimizer same` gives both the latter, to
compare the models alone. Both use the same precision (`--precision bf16|fp16` wraps both forwards in autocast;
fp16 adds a GradScaler to both). The first step's losses of both sides are printed and stored: they agree (up to
float summation order; Faster R-CNN samples at random) when the work is the same. Prints a Markdown table and writes JSON to benchmarks/results/train_step.json (or --out). Not part of the
tests; a smoke test runs --quick.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from versus_torchvision import (  # noqa: E402
    SETTINGS, add_common_arguments, alternate, autocast, build_pair, finish, framework_optimizer, ours_inputs,
    result_row, start, synthetic_batch, to_device, torchvision_targets,
)


def make_steps(arch: str, ours: torch.nn.Module, theirs: torch.nn.Module, images: list, targets: list,
               device: torch.device, precision: str, channels_last: bool, optimizer_choice: str = "framework"
               ) -> tuple[dict, dict]:
    """One training step of each side as a closure, and the losses of their first call."""
    tv_targets = torchvision_targets(arch, targets)
    first: dict[str, dict[str, float]] = {}
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def optimizer(name: str, model: torch.nn.Module) -> torch.optim.Optimizer:
        if name == "ours" and optimizer_choice == "framework":
            return framework_optimizer(model, lr=1e-4)
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)

    def step(name: str, model: torch.nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
             forward) -> None:
        with autocast(device, precision):
            losses = forward()
        loss = sum(losses.values())
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if name not in first:
            first[name] = {k: float(v.detach()) for k, v in losses.items()}

    def ours_forward() -> dict:
        batch, sizes = ours_inputs(images)
        return ours(batch.contiguous(memory_format=memory_format), targets, image_sizes=sizes)

    def theirs_forward() -> dict:
        return theirs(images, tv_targets)

    fns = {}
    for name, model, forward in (("ours", ours, ours_forward), ("torchvision", theirs, theirs_forward)):
        model.to(device, memory_format=memory_format).train()
        opt = optimizer(name, model)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        fns[name] = (lambda n=name, m=model, o=opt, s=scaler, f=forward: step(n, m, o, s, f))
    return fns, first


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawTextHelpFormatter)
    add_common_arguments(parser, "train_step")
    parser.add_argument("--setting", choices=SETTINGS, default="finetune",
                        help="finetune: stem+layer1 and all BatchNorm frozen (torchvision with weights); "
                             "scratch: everything trained, BatchNorm in train mode")
    parser.add_argument("--boxes", type=int, default=8, help="ground-truth boxes per image (at most)")
    parser.add_argument("--optimizer", choices=("framework", "same"), default="framework",
                        help="framework: each side's own SGD setup; same: torchvision's on both")
    args = parser.parse_args(argv)
    device, load_at_start = start(args)
    if args.quick:
        args.boxes = 3
    rows = []
    for arch in args.archs.split(","):
        ours, theirs = build_pair(arch, args.num_classes, args.setting, args.height, args.width)
        images, targets = synthetic_batch(args.batch, args.height, args.width, args.boxes, args.num_classes,
                                          masks=arch == "mask_rcnn")
        images, targets = to_device(images, targets, device)
        fns, first = make_steps(arch, ours, theirs, images, targets, device, args.precision, args.channels_last,
                                 args.optimizer)
        times, peaks = alternate(fns, args.warmup, args.rounds, device)
        rows.append(result_row(arch, times, peaks, args.batch, first_losses=first))
        del ours, theirs, fns
    return finish("train_step", args, device, load_at_start, rows)


if __name__ == "__main__":
    main()
