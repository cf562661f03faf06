#!/usr/bin/env python
"""Evaluate a checkpoint: `python tools/test.py checkpoint=work_dirs/<exp>/<time>/checkpoints/best.pth`.

Uses the config saved in the checkpoint; overrides on the command line (dataset.root=…, dataset=coco,
dataset.val_batch_size=8) replace the matching parts. Logs the COCO summary and the per-class AP table of each task
(bbox, and segm for a mask model), and writes metrics.json, results.bbox.json and, for a mask model,
results.segm.json (COCO results format, masks as RLE) to <run dir>/eval_<time>/, or to `output_dir=…`. On
Cityscapes with a mask model, cityscapesscripts' official instance AP (cityscapes/AP, cityscapes/AP50) is added
when that package is installed. Under torchrun every process evaluates its shard.
"""
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from framework.config.cli import hydra_cli
from framework.engine import distributed
from framework.engine.build import build_for_checkpoint


@hydra_cli("test")
def main(cfg: DictConfig) -> None:
    model, evaluation, epoch = build_for_checkpoint(cfg.checkpoint, cfg, HydraConfig.get().overrides.task)
    out = cfg.output_dir or cfg.work_dir  # output_dir=…: the outputs there instead of next to the checkpoint
    result = evaluation.run(model, epoch, official=True)
    if cfg.evaluation.plots and distributed.current().is_main:
        evaluation.write_plots(result, out)
    evaluation.write_outputs(result.metrics, out)


if __name__ == "__main__":
    main()
