#!/usr/bin/env python
"""Train a detector: `python tools/train.py model=resnet50_fpn dataset=shapes optimizer.lr=0.01`.

Outputs go to work_dirs/<experiment_name>/<timestamp>/. `--cfg job` prints the composed config, `-m` sweeps.
Ctrl-C (or SIGTERM) finishes the current step, saves checkpoints/last.pth and exits with 128 + the signal number;
continue with `resume=true`. A second Ctrl-C exits at once.
"""
import sys

from omegaconf import DictConfig

from framework.config.cli import hydra_cli
from framework.engine.build import build_trainer


@hydra_cli("train")
def main(cfg: DictConfig) -> None:
    trainer = build_trainer(cfg)
    trainer.fit()
    if trainer.interrupt is not None and trainer.interrupt.received:
        sys.exit(128 + trainer.interrupt.received)


if __name__ == "__main__":
    main()
