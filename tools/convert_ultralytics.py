#!/usr/bin/env python
"""Convert ultralytics YOLOv8 detection weights into a checkpoint of ours (model=yolo_cspdarknet_s).

    python tools/convert_ultralytics.py --weights yolov8n_state.pt --out work_dirs/ultralytics/yolov8n.pth
    python tools/test.py checkpoint=work_dirs/ultralytics/yolov8n.pth dataset.root=/data/coco

`--weights` is a state dict (`.pt`/`.pth`, or `.safetensors`) of an ultralytics YOLOv8 DetectionModel, or an official
checkpoint such as yolov8n.pt when the `ultralytics` package is importable here (official files are pickles of its
classes; without it the error prints the one-line command that extracts the state dict where it is installed). The
size (n/s/m/l/x) and the number of classes are read from the weights. The checkpoint's config feeds the network
ultralytics' input (pixels / 255, no mean/std) at dataset.img_size (640) with pipeline=yolo_style, and names
dataset=coco unless a dataset is given; anything after the options is a config override saved with it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from framework.config.cli import check_overrides
from framework.config.instantiation import instantiate
from framework.config.validation import ConfigError
from framework.engine.checkpoint import save_converted
from framework.models.convert_ultralytics import (
    UltralyticsWeightsError, describe, from_ultralytics, load_ultralytics_state,
)

# ultralytics scales pixels to [0, 1] and subtracts no mean
INPUT_OVERRIDES = ["pipeline=yolo_style", "pipeline.normalize.mean=[0,0,0]", "pipeline.normalize.std=[1,1,1]"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, type=Path, help="ultralytics state dict or checkpoint (.pt/.pth/"
                                                                ".safetensors)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write")
    p.add_argument("overrides", nargs="*", help="config overrides saved with the checkpoint (default dataset=coco)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        state, names = load_ultralytics_state(args.weights)
        info = describe(state)
        overrides = ["model=yolo_cspdarknet_s", *INPUT_OVERRIDES,
                     *(["dataset=coco"] if not any(o.startswith("dataset=") for o in args.overrides) else []),
                     *args.overrides, f"model.backbone.size={info.size}", f"model.head.reg_max={info.reg_max}",
                     f"dataset.num_classes={info.num_classes}", f"experiment_name=yolov8{info.size}_ultralytics",
                     f"work_dir={args.out.parent}"]
        cfg = check_overrides("train", overrides)
        model = instantiate(cfg.model)
        model.load_state_dict(from_ultralytics(state))
    except (ConfigError, UltralyticsWeightsError, KeyError, RuntimeError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if names is None or len(names) != info.num_classes:
        names = [f"class_{i}" for i in range(info.num_classes)]
    save_converted(model, OmegaConf.to_container(cfg, resolve=False), names,
                   f"ultralytics yolov8{info.size} {args.weights.name}", args.out)
    print(f"Wrote {args.out}: YOLOv8-{info.size} with {info.num_classes} classes ({', '.join(names[:5])}"
          f"{', …' if len(names) > 5 else ''}) from {args.weights}.\n"
          f"Evaluate: python tools/test.py checkpoint={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
