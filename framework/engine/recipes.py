"""Point a user at their model family's recipe when the run uses the generic defaults.

The defaults of `configs/train.yaml` (SGD, the 1x step schedule) are the two-stage/RetinaNet recipe for pretrained
backbones. A YOLO model trained from scratch under them learns several times slower than under its own recipe
(measured on real photos: benchmarks/README.md, "Real photos"), and nothing in the run says why. The recipes ship
as experiment configs (configs/experiment/); this names the one to use.
"""
from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["recipe_hint"]


def recipe_hint(model: nn.Module, scheduler: Any) -> str | None:
    """A warning for a YOLO model under the step schedule (the generic default), else None."""
    if type(getattr(model, "head", None)).__name__ != "YOLOHead" or getattr(scheduler, "policy", None) != "step":
        return None
    return ("A YOLO model is training under the step schedule meant for pretrained two-stage/RetinaNet recipes; "
            "from scratch it learns far slower than under its own recipe: add experiment=yolov8 "
            "(AdamW, warmup + linear decay fitted to the run, EMA, Mosaic closed for the last epochs), or choose "
            "scheduler=linear / cosine yourself.")
