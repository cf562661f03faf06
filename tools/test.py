#!/usr/bin/env python
"""Evaluate a checkpoint: `python tools/test.py checkpoint=work_dirs/<exp>/<time>/checkpoints/best.pth`.

Uses the config saved in the checkpoint; overrides on the command line (dataset.root=…, dataset=coco,
dataset.val_batch_size=8) replace the matching parts. Writes metrics.json and results.bbox.json (COCO results
format) to <run dir>/eval_<time>/.
"""
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from framework.config.cli import hydra_cli
from framework.config.overrides import merge_saved_config
from framework.engine.checkpoint import load_checkpoint
from framework.engine.runner import Runner


@hydra_cli("test")
def main(cfg: DictConfig) -> None:
    ckpt = load_checkpoint(cfg.checkpoint)
    run_cfg = merge_saved_config(ckpt["config"], cfg, HydraConfig.get().overrides.task)
    runner = Runner.from_config(run_cfg, training=False)
    runner.model.load_state_dict(ckpt["model"])
    runner.epoch = ckpt.get("epoch", 0)
    metrics = runner.evaluate(plot_dir=cfg.work_dir)
    runner.write_eval_outputs(metrics, cfg.work_dir)


if __name__ == "__main__":
    main()
