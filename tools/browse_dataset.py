#!/usr/bin/env python
"""Look at what the model will be trained on before spending hours training it.

    python tools/browse_dataset.py pipeline=yolo_style
    python tools/browse_dataset.py pipeline=gridmask num=16 epoch=5 out=work_dirs/browse.png

A wrong augmentation (boxes that no longer follow the image after a mosaic, a GridMask hiding every object,
colours pushed too far) seldom raises an error; it only makes the model worse. This tool composes the training
config with the same overrides as tools/train.py, puts the pipeline in the state of `epoch` (close-mosaic, GridMask
ramp) and writes one grid PNG of `num` random samples, boxes and class names drawn, Normalize undone. `split=val`
shows the evaluation pipeline. Each sample's boxes and source images (for Mosaic/MixUp) are listed on stdout.

Instance masks are drawn (translucent, outlined, in the class colour) when the samples have them: when the model
trains on masks (`model=mask_rcnn_r50_fpn`, as tools/train.py builds its data), or on request for any model
(`+dataset.train.with_masks=true`, `+dataset.val.with_masks=true` with `split=val`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from framework.config.instantiation import instantiate
from omegaconf import DictConfig
from torchvision.io import write_png
from torchvision.utils import make_grid

from framework.config.cli import hydra_cli
from framework.config.validation import ConfigError
from framework.data.pipeline_dataset import PipelineDataset
from framework.visualization import PALETTE, draw, find_normalize, to_uint8  # noqa: F401 (PALETTE, re-exported)

PAD = 2  # make_grid padding between tiles, pixels


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
    ds = PipelineDataset(raw_dataset(cfg), pipeline)
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
        masks = f"{len(target['masks'])} mask(s), " if "masks" in target else ""
        print(f"[{n}] index {i}: {len(target['labels'])} box(es), {masks}{image.shape[-1]}x{image.shape[-2]}, "
              f"{'mixed from images' if 'source_ids' in target else 'image'} {list(ids) if len(ids) > 1 else ids[0]}")
    h, w = max(t.shape[-2] for t in tiles), max(t.shape[-1] for t in tiles)
    tiles = [F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2])) for t in tiles]
    cols = cfg.columns or math.ceil(math.sqrt(cfg.num))
    grid = make_grid(tiles, nrow=cols, padding=PAD, pad_value=255)
    out = Path(cfg.out or Path(HydraConfig.get().runtime.output_dir) / "browse.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(grid, str(out))
    print(f"Wrote {out} ({math.ceil(cfg.num / cols)}x{min(cols, cfg.num)} tiles of {w}x{h} px)")


def raw_dataset(cfg: DictConfig) -> Any:
    """The split without transforms, with instance masks when the model trains on them (as tools/train.py builds
    it); `+dataset.<split>.with_masks=true` asks for them with any model."""
    from framework.engine.build import build_dataset

    return build_dataset(cfg.dataset[cfg.split], cfg.split, cfg.model, cfg.dataset.on_bad_image)


if __name__ == "__main__":
    main()
