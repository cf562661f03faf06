#!/usr/bin/env python
"""Train a detector: `python tools/train.py model=resnet50_fpn dataset=shapes optimizer.lr=0.01`.

Outputs go to work_dirs/<experiment_name>/<timestamp>/. `--cfg job` prints the composed config, `-m` sweeps.
"""
from omegaconf import DictConfig

from framework.config.cli import hydra_cli
from framework.engine.runner import Runner


@hydra_cli("train")
def main(cfg: DictConfig) -> None:
    Runner.from_config(cfg).train()


if __name__ == "__main__":
    main()
