#!/usr/bin/env python
"""Inference speed against torchvision: images/s of eval-mode detection, post-processing included (decoding, score
threshold, NMS, top detections, boxes back to image pixels), ours and torchvision's, for RetinaNet, FCOS and Faster
R-CNN with ResNet-50-FPN on identical weights and batches (see versus_torchvision.py).

    python benchmarks/inference.py                           # CPU defaults: 512x640, batch 2
    python benchmarks/inference.py --height 800 --width 1333 --batch 8 --precision bf16   # on a GPU
    python benchmarks/inference.py --quick --out /tmp/i.json                            # smoke run, no claims

Randomly initialised detectors score every candidate near their classifier's prior (0.01), under the 0.05 score
threshold, so NMS would have nothing to do. `--score-prior 0.1` (default) sets both sides' classifier bias so that
candidates score about 0.1: every level's top 1,000 reach NMS, the heavy end of what a trained model sends there
(`--score-prior none` keeps the initialisation). The detections of both sides are compared on the first batch and
the agreement is stored. Prints a Markdown table and writes JSON to benchmarks/results/inference.json (or --out).
Not part of the tests; a smoke test runs --quick.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from framework.evaluation.agreement import matched_share
from framework.models.convert_torchvision import TWO_STAGE

sys.path.insert(0, str(Path(__file__).resolve().parent))

from versus_torchvision import (  # noqa: E402
    add_common_arguments, alternate, autocast, build_pair, finish, ours_inputs, result_row, start, synthetic_batch,
    to_device,
)


def agreement(arch: str, ours: list[dict], theirs: list[dict]) -> dict[str, float]:
    """How alike the two sides' detections are: counts, and the share of torchvision's detections that ours
    reproduce (same label, score within 1e-3, box IoU >= 0.99; zero-area boxes by their corners)."""
    return {"ours_detections": sum(len(o["boxes"]) for o in ours),
            "torchvision_detections": sum(len(t["boxes"]) for t in theirs),
            "matched_share": matched_share(theirs, ours, label_shift=1 if arch in TWO_STAGE else 0)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawTextHelpFormatter)
    add_common_arguments(parser, "inference")
    parser.add_argument("--score-prior", default="0.1", help="classifier prior probability, or none")
    args = parser.parse_args(argv)
    device, load_at_start = start(args)
    prior = None if args.score_prior.lower() == "none" else float(args.score_prior)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    rows = []
    for arch in args.archs.split(","):
        ours, theirs = build_pair(arch, args.num_classes, "finetune", args.height, args.width, score_prior=prior)
        images, _ = synthetic_batch(args.batch, args.height, args.width, 1, args.num_classes)
        images, _ = to_device(images, [], device)
        for model in (ours, theirs):
            model.to(device, memory_format=memory_format).eval()
        sizes = [tuple(img.shape[-2:]) for img in images]

        @torch.inference_mode()
        def run_ours() -> list[dict]:
            batch, image_sizes = ours_inputs(images)
            with autocast(device, args.precision):
                return ours(batch.contiguous(memory_format=memory_format), image_sizes=image_sizes, orig_sizes=sizes)

        @torch.inference_mode()
        def run_theirs() -> list[dict]:
            with autocast(device, args.precision):
                return theirs(images)

        match = agreement(arch, run_ours(), run_theirs())
        times, peaks = alternate({"ours": run_ours, "torchvision": run_theirs}, args.warmup, args.rounds, device)
        rows.append(result_row(arch, times, peaks, args.batch, agreement=match))
    return finish("inference", args, device, load_at_start, rows)


if __name__ == "__main__":
    main()
