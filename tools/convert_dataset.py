#!/usr/bin/env python
"""Convert a detection dataset between the YOLO, COCO and Pascal VOC layouts (any direction).

    python tools/convert_dataset.py --from voc --src data/VOCdevkit --to yolo --out data/voc_yolo
    python tools/convert_dataset.py --from voc --src data/VOCdevkit --years 2007 --splits trainval:train test:val \\
        --to yolo --out data/voc07_yolo
    python tools/convert_dataset.py --from yolo --src data/mine/data.yaml --to coco --out data/mine_coco
    python tools/convert_dataset.py --from coco --src data/coco --splits train2017 val2017 --to voc --out data/coco_voc

--src is the data.yaml (or its folder) for YOLO, the folder holding annotations/ for COCO (files
annotations/instances_<split>.json, images in images/<split>/ or <split>/; --ann-files and --img-dirs name others),
and the VOCdevkit folder for VOC. --splits lists the source splits (default: all the source has), each optionally
renamed in the output as SRC:DST. Images are symlinked unless --copy-images. The output folder must be new or empty
(--overwrite replaces it, once the new one is complete). The last line printed is the command that trains on it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from framework.data.convert import FORMATS, convert, default_splits, open_split
from framework.data.errors import DatasetError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="src_format", required=True, choices=FORMATS, help="layout of the source")
    p.add_argument("--src", required=True, type=Path, help="source dataset (see below)")
    p.add_argument("--to", required=True, choices=FORMATS, help="layout to write")
    p.add_argument("--out", required=True, type=Path, help="output folder (new or empty)")
    p.add_argument("--splits", nargs="+", default=None, metavar="SRC[:DST]",
                   help="source splits (VOC image sets), optionally renamed (default: all the source has)")
    p.add_argument("--years", nargs="+", default=["2007"], help="VOC source: year folders to read (default: 2007)")
    p.add_argument("--ann-files", nargs="+", default=None, help="COCO source: annotation file per split")
    p.add_argument("--img-dirs", nargs="+", default=None, help="COCO source: image folder per split")
    p.add_argument("--copy-images", action="store_true", help="copy the images instead of symlinking them")
    p.add_argument("--polygons", action="store_true", help="YOLO output: write polygons (segmentation) as polygon rows")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        specs = args.splits or default_splits(args.src_format, args.src, args.years)
        pairs = [tuple(s.split(":", 1)) if ":" in s else (s, s) for s in specs]
        for name, files in (("--ann-files", args.ann_files), ("--img-dirs", args.img_dirs)):
            if files is not None and len(files) != len(pairs):
                raise ValueError(f"{name} gives {len(files)} entries for {len(pairs)} splits; give one per split")
        sources = {}
        for k, (src_split, dst_split) in enumerate(pairs):
            if dst_split in sources:
                raise ValueError(f"two source splits are written as '{dst_split}'; rename one with SRC:DST")
            sources[dst_split] = open_split(args.src_format, args.src, src_split, args.years,
                                            args.ann_files[k] if args.ann_files else None,
                                            args.img_dirs[k] if args.img_dirs else None)
        done = convert(sources, args.to, args.out, copy_images=args.copy_images, overwrite=args.overwrite,
                       polygons=args.polygons)
    except (DatasetError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    listing = ", ".join(f"{s}: {c['images']} images, {c['objects']} objects" for s, c in done.splits.items())
    print(f"Wrote {done.out} ({args.to} layout; {listing}) in {time.perf_counter() - start:.1f} s")
    for what, n in done.notes.items():
        print(f"  {n} {what}")
    print(f"Train on it: {done.use}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
