#!/usr/bin/env python
"""Look at what the model will be trained on before spending hours training it.

    python tools/browse_dataset.py pipeline=yolo_style
    python tools/browse_dataset.py pipeline=gridmask num=16 epoch=5 out=work_dirs/browse.png

A wrong augmentation (boxes that no longer follow the image after a mosaic, a GridMask hiding every object,
colours pushed too far) seldom raises an error; it only makes the model worse. This tool composes the training
config with the same overrides as tools/train.py, puts the pipeline in the state of `epoch` (close-mosaic, GridMask
ramp) and writes one grid PNG of `num` random samples, boxes and class names drawn, Normalize undone. `split=val`
shows the evaluation pipeline. Each sample's boxes and source images (for Mosaic/MixUp) are listed on stdout.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import ImageDraw, ImageFont
from torchvision.io import write_png
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image
from torchvision.utils import make_grid

from framework.config.cli import hydra_cli
from framework.config.validation import ConfigError
from framework.data.pipeline_dataset import PipelineDataset
from framework.data.transforms import Normalize
from framework.data.transforms.pipeline import iter_transforms

PALETTE = [(255, 56, 56), (50, 205, 50), (0, 149, 255), (255, 178, 29), (207, 56, 255), (0, 230, 230),
           (255, 112, 180), (170, 255, 0), (255, 255, 255), (140, 100, 255)]  # colour of class k: PALETTE[k % 10]
PAD = 2  # make_grid padding between tiles, pixels


def find_normalize(pipeline: Any) -> Optional[Normalize]:
    steps = getattr(pipeline, "transforms", None) or []
    return next((t for t in iter_transforms(steps) if isinstance(t, Normalize)), None)


def to_uint8(image: torch.Tensor, norm: Optional[Normalize]) -> torch.Tensor:
    """Undo `norm` (if any) and return a uint8 CHW image."""
    image = image.as_subclass(torch.Tensor)
    if norm is not None:
        image = image * torch.tensor(norm.std).view(-1, 1, 1) + torch.tensor(norm.mean).view(-1, 1, 1)
    elif image.dtype == torch.uint8:
        return image
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def draw(image: torch.Tensor, target: dict[str, Any], classes: list[str]) -> torch.Tensor:
    """Boxes, and class names on a tag *above* each box (inside, torchvision's place, they hide small objects)."""
    pil = to_pil_image(image)
    pen, font = ImageDraw.Draw(pil), ImageFont.load_default()
    for (x0, y0, x1, y1), k in zip(target["boxes"].tolist(), target["labels"].tolist()):
        colour, name = PALETTE[k % len(PALETTE)], classes[k]
        pen.rectangle((x0, y0, x1, y1), outline=colour, width=2)
        left, top, right, bottom = pen.textbbox((0, 0), name, font=font)
        th = bottom - top + 2
        ty = y0 - th if y0 >= th else y0  # above the box, or inside it at the image's top edge
        pen.rectangle((x0, ty, x0 + right - left + 2, ty + th), fill=colour)
        pen.text((x0 + 1 - left, ty + 1 - top), name, fill=(0, 0, 0), font=font)
    return pil_to_tensor(pil)


@hydra_cli("browse")
def main(cfg: DictConfig) -> None:
    if cfg.num < 1:
        raise ConfigError(f"num must be at least 1 (samples in the grid), got num={cfg.num}.")
    if cfg.split not in ("train", "val"):
        raise ConfigError(f"split must be 'train' or 'val', got split={cfg.split!r}.")
    if cfg.epoch < 0:
        raise ConfigError(f"epoch must be >= 0 (the epoch whose pipeline state to show), got epoch={cfg.epoch}.")
    if cfg.columns is not None and cfg.columns < 1:
        raise ConfigError(f"columns must be at least 1, got columns={cfg.columns}.")
    torch.manual_seed(cfg.seed)
    pipeline = instantiate(cfg.pipeline[cfg.split])
    if hasattr(pipeline, "set_epoch"):
        pipeline.set_epoch(cfg.epoch, cfg.trainer.max_epochs)
        print(f"pipeline state at epoch {cfg.epoch}/{cfg.trainer.max_epochs}: {pipeline.epoch_summary()}")
    ds = PipelineDataset(instantiate(cfg.dataset[cfg.split]), pipeline)
    if len(ds) == 0:
        raise ConfigError(f"The {cfg.split} split of dataset '{cfg.dataset.name}' ({cfg.dataset.root}) has no images.")
    norm, classes = find_normalize(pipeline), list(ds.classes)
    g = torch.Generator().manual_seed(cfg.seed)  # distinct random indices (repeating only if num > len(ds))
    indices = torch.randperm(len(ds), generator=g).repeat(math.ceil(cfg.num / len(ds)))[:cfg.num].tolist()
    tiles = []
    for n, i in enumerate(indices):
        image, target = ds[i]
        tiles.append(draw(to_uint8(image, norm), target, classes))
        ids = target.get("source_ids", [target.get("image_id")])
        print(f"[{n}] index {i}: {len(target['labels'])} box(es), {image.shape[-1]}x{image.shape[-2]}, "
              f"{'mixed from images' if 'source_ids' in target else 'image'} {list(ids) if len(ids) > 1 else ids[0]}")
    h, w = max(t.shape[-2] for t in tiles), max(t.shape[-1] for t in tiles)
    tiles = [F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2])) for t in tiles]
    cols = cfg.columns or math.ceil(math.sqrt(cfg.num))
    grid = make_grid(tiles, nrow=cols, padding=PAD, pad_value=255)
    out = Path(cfg.out or Path(HydraConfig.get().runtime.output_dir) / "browse.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(grid, str(out))
    print(f"Wrote {out} ({math.ceil(cfg.num / cols)}x{min(cols, cfg.num)} tiles of {w}x{h} px)")


if __name__ == "__main__":
    main()
