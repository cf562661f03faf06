#!/usr/bin/env python
"""Evaluate a checkpoint: `python tools/test.py checkpoint=work_dirs/<exp>/<time>/checkpoints/best.pth`.

Uses the config saved in the checkpoint; overrides on the command line (dataset.root=…, dataset=coco,
dataset.val_batch_size=8) replace the matching parts. Writes metrics.json and results.bbox.json (COCO results
format) to <run dir>/eval_<time>/, or to `output_dir=…`. Under torchrun every process evaluates its shard.
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
    result = evaluation.run(model, epoch)
    if cfg.evaluation.plots and distributed.current().is_main:
        evaluation.write_plots(result, out)
    evaluation.write_outputs(result.metrics, out)


if __name__ == "__main__":
    main()
