#!/usr/bin/env python
"""Score a COCO-format results file against a dataset, without a model:

    python tools/eval_results.py results=work_dirs/<exp>/<time>/eval_<time>/results.bbox.json
    python tools/eval_results.py results=work_dirs/<exp>/<time>/eval_<time>/results.segm.json
    python tools/eval_results.py results=detections.json dataset=voc07 dataset.root=/data/VOCdevkit

For detections made elsewhere (another framework, an exported model, a submission file). The dataset's metric
applies (`dataset.metric`: COCO's 12 numbers, or VOC AP@0.5), as do the plots. The file's records decide what is
scored (framework/evaluation/results_file.py): boxes when they carry `bbox`, instance masks (`segm/…`, COCO metric
only) when they carry `segmentation` (RLE or polygons), both when they carry both; for masks the dataset is read
with its masks. Writes metrics.json and the plots to work_dirs/eval_results/<time>/.
"""
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from framework.config.cli import hydra_cli
from framework.config.instantiation import instantiate
from framework.config.validation import ConfigError
from framework.evaluation.build import build_evaluator, ground_truth
from framework.evaluation.coco import format_metrics_table
from framework.evaluation.metric_names import group_by_task
from framework.evaluation.results_file import read_results, results_tasks, results_to_detections

logger = logging.getLogger("framework")


def val_dataset(cfg: DictConfig, masks: bool) -> Any:
    """`dataset.val`, read with its instance masks when mask results are scored."""
    if not masks:
        return instantiate(cfg.dataset.val)
    try:
        return instantiate(cfg.dataset.val, with_masks=True)
    except Exception as err:  # noqa: BLE001
        if "with_masks" not in str(err):
            raise
        raise ConfigError(f"{cfg.results} holds mask results (segmentation), but dataset.val "
                          f"({cfg.dataset.val.get('_target_')}) has no masks to score them against.") from None


@hydra_cli("eval_results")
def main(cfg: DictConfig) -> None:
    path = Path(cfg.results).expanduser()
    records = read_results(path)
    tasks = results_tasks(records, path)
    dataset = val_dataset(cfg, masks="segm" in tasks)
    detections = results_to_detections(records, dataset, path, tasks)
    evaluator = build_evaluator(dataset, cfg.dataset.metric, cfg.evaluation.backend,
                                tasks=tasks if cfg.dataset.metric == "coco" or "segm" in tasks else None)
    ids = sorted(detections)
    evaluator.process(ids, [detections[i] for i in ids])
    metrics = evaluator.evaluate()
    metrics.update(evaluator.evaluate_official() if hasattr(evaluator, "evaluate_official") else {})
    logger.info(f"Scored {path.name}: {', '.join(tasks)}\n{evaluator.summary}\n{evaluator.format_per_class()}\n"
                f"{format_metrics_table(metrics)}")
    out = Path(cfg.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_class = getattr(evaluator, "per_class_by_task", None) or {"bbox": evaluator.per_class}
    (out / "metrics.json").write_text(json.dumps({**group_by_task(metrics), "per_class": per_class}, indent=2))
    if cfg.evaluation.plots:
        from framework.evaluation.plots import write_plots

        for task in tasks:
            report = write_plots(ground_truth(dataset, masks=task == "segm"), detections, list(dataset.classes),
                                 out, task=task)
            logger.info(f"{task}: best F1 {report['best_f1']:.3f} at confidence {report['best_conf']:.3f}")
    logger.info(f"Wrote {out / 'metrics.json'} and the plots to {out}")


if __name__ == "__main__":
    main()
