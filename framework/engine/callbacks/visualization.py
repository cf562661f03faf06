"""After each evaluation: the PR, F1 and confusion-matrix plots in the run folder (`plots`), and the first
`images` validation images with ground truth and predictions, plus those plots, in TensorBoard."""
from __future__ import annotations

from typing import Any

import torch

from framework.engine.callbacks.base import Callback
from framework.engine.callbacks.tensorboard import TensorBoard
from framework.engine.evaluation import Evaluation


class Visualization(Callback):
    order = 50

    def __init__(self, evaluation: Evaluation, plots: bool, images: int) -> None:
        self.evaluation, self.plots, self.images = evaluation, plots, images
        self._samples: list[tuple[torch.Tensor, dict[str, Any]]] | None = None

    def on_eval_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        if not trainer.dist.is_main or trainer.last_eval is None:
            return
        tb = trainer.callback(TensorBoard)
        if self.plots:
            for name, figure in self.evaluation.write_plots(trainer.last_eval, trainer.work_dir).items():
                if tb is not None:
                    tb.figure(trainer, f"val/{name}", figure)
                else:
                    import matplotlib.pyplot as plt

                    plt.close(figure)
        if tb is None or not self.images:
            return
        from framework.visualization import draw_detections

        for i, (image, target) in enumerate(self.samples()):
            dets = trainer.last_eval.detections.get(int(target["image_id"]), no_detections())
            if "rles" in dets:  # a mask model's detections are kept as RLE; drawn, they are masks again
                from framework.evaluation.masks import decode_rles

                dets = {**dets, "masks": decode_rles(dets["rles"], tuple(image.shape[-2:]))}
            tile = draw_detections(image.as_subclass(torch.Tensor), dets, target, self.evaluation.class_names)
            tb.image(trainer, f"val_images/{i}", tile)

    def samples(self) -> list[tuple[torch.Tensor, dict[str, Any]]]:
        """The first `images` validation images at their original size (decoded once)."""
        if self._samples is None:
            dataset = self.evaluation.loader.dataset
            n = min(self.images, len(dataset)) if hasattr(dataset, "transforms") else 0
            self._samples = [raw_sample(dataset, i) for i in range(n)]
        return self._samples


def raw_sample(dataset: Any, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """`dataset[index]` without its transforms: the decoded image at its original size."""
    transforms = getattr(dataset, "transforms", None)
    dataset.transforms = None
    try:
        return dataset[index]
    finally:
        dataset.transforms = transforms


def no_detections() -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
