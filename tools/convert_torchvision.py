#!/usr/bin/env python
"""Convert torchvision's RetinaNet / FCOS / Faster / Mask R-CNN (ResNet-50-FPN) weights into a checkpoint of ours.

    python tools/convert_torchvision.py --arch retinanet --weights COCO_V1 --out work_dirs/torchvision/retinanet.pth
    python tools/test.py checkpoint=work_dirs/torchvision/retinanet.pth dataset=coco dataset.root=/data/coco

`--weights` is a torchvision weights name (downloaded into torch's hub cache) or a .pth state-dict file. By default
the 80 COCO classes are kept in our COCO dataset's label order (`--classes coco`); `--classes all` keeps all 91 of
torchvision's slots, `--classes 1,2,3` a list of slots. Anything after the options is a config override
(`dataset=coco`, `dataset.root=…`) saved with the checkpoint, so tools/test.py can use it directly. The checkpoint
uses `pipeline=torchvision` (torchvision's own normalize-then-resize) unless a `pipeline=` override says otherwise,
so it reproduces torchvision's detections.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from framework.config.instantiation import instantiate
from omegaconf import OmegaConf

from framework.config.cli import check_overrides
from framework.config.validation import ConfigError
from framework.engine.checkpoint import save_converted
from framework.models.convert_torchvision import (
    ARCHS, TORCHVISION_MODELS, TWO_STAGE, TorchvisionWeightsError, coco_slots, convert_state_dict,
    load_torchvision_state, num_class_slots,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True, choices=ARCHS, help="torchvision detector family")
    p.add_argument("--weights", default="COCO_V1", help="weights enum name (default COCO_V1) or a .pth file")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write")
    p.add_argument("--classes", default="coco", help="coco (80 COCO classes, default), all (every slot) or 1,2,…")
    p.add_argument("overrides", nargs="*", help="config overrides saved with the checkpoint (default dataset=coco)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        state, names = load_torchvision_state(args.arch, args.weights)
        if args.classes == "coco":
            slots = coco_slots(names)
        elif args.classes == "all":
            slots = list(range(1 if args.arch in TWO_STAGE else 0, num_class_slots(state, args.arch)))
        else:
            slots = [int(s) for s in args.classes.split(",")]
        model_cfg = TORCHVISION_MODELS[args.arch][0]
        given = {o.split("=", 1)[0] for o in args.overrides}
        # torchvision's own preprocessing (GeneralizedRCNNTransform), so the checkpoint gives torchvision's detections
        overrides = [f"model={model_cfg}", *(["dataset=coco"] if "dataset" not in given else []),
                     *(["pipeline=torchvision"] if "pipeline" not in given else []),
                     *args.overrides, f"dataset.num_classes={len(slots)}",
                     f"experiment_name=torchvision_{args.arch}", f"work_dir={args.out.parent}"]
        cfg = check_overrides("train", overrides)
        model = instantiate(cfg.model)
        model.load_state_dict(convert_state_dict(state, args.arch, slots))
    except (ConfigError, TorchvisionWeightsError, KeyError, RuntimeError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    layout_is_coco = num_class_slots(state, args.arch) == len(names)  # torchvision's 91-slot COCO layout
    classes = [names[s] if layout_is_coco else f"class_{s}" for s in slots]
    save_converted(model, OmegaConf.to_container(cfg, resolve=False), classes,
                   f"torchvision {TORCHVISION_MODELS[args.arch][1]} {args.weights}", args.out)
    print(f"Wrote {args.out}: {model_cfg} with {len(slots)} classes ({', '.join(classes[:5])}"
          f"{', …' if len(classes) > 5 else ''}) from torchvision's {TORCHVISION_MODELS[args.arch][1]} "
          f"({args.weights}).\nEvaluate: python tools/test.py checkpoint={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
