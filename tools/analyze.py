#!/usr/bin/env python
"""What a model costs, from its config alone (no dataset, no checkpoint):

    python tools/analyze.py model=retinanet_r50_fpn
    python tools/analyze.py model=resnet50_fpn model/backbone=resnet18 input_size=[640,640] batch_size=8
    python tools/analyze.py model=yolo_cspdarknet_s trainer.device=cuda trainer.precision=bf16 latency_runs=100
    python tools/analyze.py experiment=shapes_demo latency_runs=0 out=/tmp/demo_cost.json

Prints, per component (backbone, neck, head): parameters (all and trainable) and GFLOPs/GMACs of one image at
`input_size` (h, w), counted by torch.utils.flop_counter (a multiply-add is 2 FLOPs); the theoretical receptive
field and stride of each backbone output; and the latency of the eval forward (random weights and images) at
`batch_size` on trainer.device, with trainer.precision and trainer.channels_last. Writes the same numbers to
analysis.json in work_dirs/analyze/<time>/ (or `out`). The head is sized by dataset.num_classes (80, COCO's, unless set).
"""
import json
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from framework.config.instantiation import instantiate
from omegaconf import DictConfig

from framework.analysis import analyze, format_table
from framework.config.cli import hydra_cli
from framework.config.validation import ConfigError
from framework.engine.setup import PRECISIONS, resolve_device
from framework.fileio import atomic_write

logger = logging.getLogger("framework")
WARMUP = 5  # untimed passes before the latency runs (at most latency_runs)


def check(cfg: DictConfig) -> None:
    if len(cfg.input_size) != 2 or min(cfg.input_size) < 1:
        raise ConfigError(f"input_size must be [height, width] in pixels, e.g. input_size=[800,1333]; got "
                          f"{list(cfg.input_size)}.")
    if cfg.batch_size < 1 or cfg.latency_runs < 0:
        raise ConfigError(f"batch_size must be at least 1 and latency_runs at least 0 (0 skips the latency); got "
                          f"batch_size={cfg.batch_size}, latency_runs={cfg.latency_runs}.")
    if cfg.trainer.precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={cfg.trainer.precision} is not one of {', '.join(PRECISIONS)}.")


DEFAULT_CLASSES = 80


@hydra_cli("analyze")
def main(cfg: DictConfig) -> None:
    check(cfg)
    device = resolve_device(cfg.trainer.device)
    if cfg.dataset.num_classes is None:  # training reads it from the data; the analysis reads no data
        cfg.dataset.num_classes = DEFAULT_CLASSES
        logger.info(f"Sizing the head for {DEFAULT_CLASSES} classes (COCO's); set dataset.num_classes=K for another count")
    model = instantiate(cfg.model)
    report = analyze(model, cfg.input_size, cfg.batch_size, cfg.latency_runs, min(WARMUP, cfg.latency_runs),
                     device, PRECISIONS[cfg.trainer.precision], cfg.trainer.channels_last)
    choices = HydraConfig.get().runtime.choices
    report["config"] = {g: choices.get(g) for g in ("model", "model/backbone", "model/neck", "model/head", "dataset")}
    logger.info(f"Model {report['config']['model']} (backbone {report['config']['model/backbone']}, "
                f"{cfg.dataset.num_classes} classes)\n{format_table(report)}")
    out = Path(cfg.out).expanduser() if cfg.out else Path(cfg.work_dir) / "analysis.json"
    with atomic_write(out) as f:
        f.write((json.dumps(report, indent=2) + "\n").encode())
    logger.info(f"Wrote {out}")


if __name__ == "__main__":
    main()
