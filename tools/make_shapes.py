"""Generate the synthetic shapes dataset (COCO layout) ahead of time.

Datasets generate themselves on first use; this script exists to do it explicitly,
e.g. before several runs start at once, or to build a different size/seed.

    python tools/make_shapes.py --root data/shapes --num-train 2000 --num-val 300
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from framework.data.datasets.shapes import generate_shapes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="data/shapes", help="output folder (default: data/shapes)")
    p.add_argument("--num-train", type=int, default=2000, help="training images (default: 2000)")
    p.add_argument("--num-val", type=int, default=300, help="validation images (default: 300)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--force", action="store_true", help="regenerate even if it already exists")
    return p.parse_args(argv)


def _count(ann_file: Path) -> tuple[int, int]:
    with open(ann_file, encoding="utf-8") as f:
        data = json.load(f)
    return len(data["images"]), len(data["annotations"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.root)
    anns = [root / "annotations" / f"instances_{s}.json" for s in ("train", "val")]
    if all(a.is_file() for a in anns) and not args.force:
        print(f"{root} already exists; nothing to do (use --force to regenerate)")
        return 0
    start = time.perf_counter()
    out = generate_shapes(root, num_train=args.num_train, num_val=args.num_val, seed=args.seed)
    seconds = time.perf_counter() - start
    for split, ann in zip(("train", "val"), anns):
        n_img, n_ann = _count(ann)
        print(f"{split}: {n_img} images, {n_ann} objects -> {out / 'images' / split}")
    print(f"wrote {out} in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
