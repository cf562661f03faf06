"""Mask R-CNN export is refused with the reason, as Faster R-CNN's is: its box and mask stages run on a
data-dependent set of proposals and detections per image, so it has no `dense_predictions` to export."""
from __future__ import annotations

import pytest
from hydra.utils import instantiate

from framework.config.cli import check_overrides
from framework.export import ExportError, ExportWrapper


def test_mask_rcnn_export_is_refused_with_the_reason():
    cfg = check_overrides("train", ["model=mask_rcnn_r50_fpn", "model/backbone=resnet18", "dataset.num_classes=4"])
    model = instantiate(cfg.model)
    assert model.needs_masks
    with pytest.raises(ExportError, match=r"one-stage heads.*MaskRCNNHead, which has no dense_predictions"):
        ExportWrapper(model)
