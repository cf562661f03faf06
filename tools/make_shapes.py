"""Generate the synthetic shapes dataset ahead of time, in COCO, Pascal VOC or Cityscapes layout.

Datasets generate themselves on first use (COCO layout); this script exists to do it explicitly, e.g. before
several runs start at once, to build a different size/seed, or to write the same pictures in the VOC and
Cityscapes layouts so those loaders can be tried without downloading anything. Every layout holds the same exact
instance masks (COCO: RLE; VOC: SegmentationObject/SegmentationClass PNGs; Cityscapes: gtFine_instanceIds.png), so
a data/shapes written before masks were exact is rewritten with --force:

    python tools/make_shapes.py --root data/shapes --num-train 2000 --num-val 300
    python tools/make_shapes.py --layout voc          # data/shapes_voc/VOC2007/…  → dataset=voc07 dataset.root=data/shapes_voc dataset.num_classes=4
    python tools/make_shapes.py --layout cityscapes   # data/shapes_cityscapes/{leftImg8bit,gtFine}/…  → dataset=cityscapes dataset.root=data/shapes_cityscapes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from framework.data.datasets.shapes import generate_shapes
from framework.data.datasets.shapes_cityscapes import write_shapes_cityscapes
from framework.data.datasets.shapes_voc import write_shapes_voc

WRITERS = {"coco": generate_shapes, "voc": write_shapes_voc, "cityscapes": write_shapes_cityscapes}
DEFAULT_ROOTS = {"coco": "data/shapes", "voc": "data/shapes_voc", "cityscapes": "data/shapes_cityscapes"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layout", choices=sorted(WRITERS), default="coco", help="folder layout (default: coco)")
    p.add_argument("--root", default=None, help="output folder (default: data/shapes, data/shapes_voc or "
                                                "data/shapes_cityscapes by layout)")
    p.add_argument("--num-train", type=int, default=2000, help="training images (default: 2000)")
    p.add_argument("--num-val", type=int, default=300, help="validation images (default: 300)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--force", action="store_true", help="regenerate even if it already exists")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.root or DEFAULT_ROOTS[args.layout])
    if root.exists() and any(root.iterdir()) and not args.force:
        print(f"{root} already exists; nothing to do (use --force to regenerate)")
        return 0
    start = time.perf_counter()
    out = WRITERS[args.layout](root, num_train=args.num_train, num_val=args.num_val, seed=args.seed)
    files = sum(1 for p in Path(out).rglob("*") if p.is_file())
    print(f"wrote {out} ({args.layout} layout, {args.num_train} train / {args.num_val} val images, {files} files) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
