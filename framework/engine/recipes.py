"""Point a user at their model family's recipe when the run uses the generic defaults.

The defaults of `configs/train.yaml` (SGD, the 1x step schedule) are the two-stage/RetinaNet recipe for pretrained
backbones. A YOLO model under them trains with another family's recipe, and nothing in the run says so: before
schedules followed the run it learned six times slower than ultralytics on real photos; fitted to the run, a step
schedule with AdamW now does about as well as the recipe there (benchmarks/README.md, "Real photos"), but the
reference's numbers assume its own recipe. The recipes ship as experiment configs (configs/experiment/); this names
the one to use.
"""
from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["recipe_hint"]


def recipe_hint(model: nn.Module, scheduler: Any) -> str | None:
    """A warning for a YOLO model under the step schedule (the generic default), else None."""
    if type(getattr(model, "head", None)).__name__ != "YOLOHead" or getattr(scheduler, "policy", None) != "step":
        return None
    return ("A YOLO model is training under the step schedule meant for pretrained two-stage/RetinaNet recipes, "
            "not under YOLOv8's own: add experiment=yolov8 "
            "(AdamW, warmup + linear decay fitted to the run, EMA, Mosaic closed for the last epochs), or choose "
            "scheduler=linear / cosine yourself.")
