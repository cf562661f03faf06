#!/usr/bin/env python
"""Score a COCO-format results file against a dataset, without a model:

    python tools/eval_results.py results=work_dirs/<exp>/<time>/eval_<time>/results.bbox.json
    python tools/eval_results.py results=detections.json dataset=voc07 dataset.root=/data/VOCdevkit

For detections made elsewhere (another framework, an exported model, a submission file). The dataset's metric
applies (`dataset.metric`: COCO's 12 numbers, or VOC AP@0.5), as do the plots. Writes metrics.json and the plots
to work_dirs/eval_results/<time>/.
"""
import json
import logging
from pathlib import Path
from typing import Any

import torch
from framework.config.instantiation import instantiate
from omegaconf import DictConfig

from framework.config.cli import hydra_cli
from framework.config.validation import ConfigError
from framework.evaluation.build import build_evaluator, ground_truth
from framework.evaluation.coco import format_metrics_table

logger = logging.getLogger("framework")


def load_results(path: Path, dataset: Any) -> dict[int, dict[str, torch.Tensor]]:
    """Detections per image id (boxes XYXY, scores, contiguous labels) from a COCO results JSON."""
    if not path.is_file():
        raise FileNotFoundError(f"Results file {path} does not exist (set results=/path/to/results.bbox.json).")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"Could not parse {path}: {e.msg} at line {e.lineno}, column {e.colno}") from e
    if not isinstance(records, list):
        raise ConfigError(f"{path} is not a COCO results file: expected a JSON list of "
                          "{image_id, category_id, bbox, score} objects")
    known = {int(i) for i in dataset.coco.imgs}
    per_image: dict[int, list[tuple[list[float], float, int]]] = {i: [] for i in known}
    for n, r in enumerate(records):
        try:
            img, cat, (x, y, w, h), score = int(r["image_id"]), int(r["category_id"]), r["bbox"], float(r["score"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{path}: record {n} is not {{image_id, category_id, bbox: [x, y, w, h], score}}: "
                              f"{r!r}") from e
        if img not in known:
            raise ConfigError(f"{path}: record {n} has image_id {img}, which is not in the dataset "
                              f"({dataset.coco.dataset.get('info', {}).get('description', 'val split')})")
        if cat not in dataset.cat_id_to_label:
            raise ConfigError(f"{path}: record {n} has category_id {cat}, not one of the dataset's "
                              f"{sorted(dataset.cat_id_to_label)}")
        per_image[img].append(([x, y, x + w, y + h], score, dataset.cat_id_to_label[cat]))
    return {img: {"boxes": torch.tensor([d[0] for d in dets], dtype=torch.float32).reshape(-1, 4),
                  "scores": torch.tensor([d[1] for d in dets], dtype=torch.float32),
                  "labels": torch.tensor([d[2] for d in dets], dtype=torch.int64)}
            for img, dets in per_image.items()}


@hydra_cli("eval_results")
def main(cfg: DictConfig) -> None:
    dataset = instantiate(cfg.dataset.val)
    detections = load_results(Path(cfg.results).expanduser(), dataset)
    evaluator = build_evaluator(dataset, cfg.dataset.metric, cfg.evaluation.backend)
    ids = sorted(detections)
    evaluator.process(ids, [detections[i] for i in ids])
    metrics = evaluator.evaluate()
    logger.info(f"{evaluator.summary}\n{evaluator.format_per_class()}\n{format_metrics_table(metrics)}")
    out = Path(cfg.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"bbox": metrics, "per_class": evaluator.per_class}, indent=2))
    if cfg.evaluation.plots:
        from framework.evaluation.plots import write_plots

        report = write_plots(ground_truth(dataset), detections, list(dataset.classes), out)
        logger.info(f"Best F1 {report['best_f1']:.3f} at confidence {report['best_conf']:.3f}")
    logger.info(f"Wrote {out / 'metrics.json'} and the plots to {out}")


if __name__ == "__main__":
    main()
