#!/usr/bin/env python
"""Redraw a finished run's figures in its folder: `python tools/plot_run.py work_dirs/<exp>/<time>`.

`results.png` (loss, lr and validation curves) comes from the run's metrics.jsonl. With `plots=true` (default) the
run's best.pth (or `checkpoint=…`) is evaluated on its validation set to redraw pr_curve.png, f1_curve.png and
confusion_matrix.png, e.g. for runs trained with `evaluation.plots=false`. Overrides work as in tools/test.py.
"""
import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from framework.config.cli import hydra_cli
from framework.engine.build import build_for_checkpoint
from framework.visualization import plot_results

logger = logging.getLogger("framework")


def run_checkpoint(run_dir: Path, checkpoint: str | None) -> Path:
    if checkpoint:
        return Path(checkpoint)
    for name in ("best.pth", "last.pth"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise FileNotFoundError(f"{run_dir}/checkpoints holds neither best.pth nor last.pth; pass checkpoint=… or "
                            "plots=false for the curves only.")


@hydra_cli("plot_run")
def main(cfg: DictConfig) -> None:
    run_dir = Path(cfg.run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} does not exist: run_dir must be a training run folder "
                                "(work_dirs/<experiment>/<time>).")
    logger.info(f"Curves: {plot_results(metrics, run_dir / 'results.png')}")
    if cfg.plots:
        checkpoint = run_checkpoint(run_dir, cfg.checkpoint)
        overrides = [o for o in HydraConfig.get().overrides.task if o.split("=", 1)[0] not in ("run_dir", "plots")]
        model, evaluation, epoch = build_for_checkpoint(checkpoint, cfg, overrides)
        evaluation.write_plots(evaluation.run(model, epoch), run_dir)


if __name__ == "__main__":
    # `tools/plot_run.py <run dir>`: a bare first argument is the run folder
    if len(sys.argv) > 1 and "=" not in sys.argv[1] and not sys.argv[1].startswith("-"):
        sys.argv[1] = f"run_dir={sys.argv[1]}"
    main()
