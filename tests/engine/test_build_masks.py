"""Masks are loaded only when the model asks: a mask head (`needs_masks`) makes `build_dataset` give the datasets
`with_masks=True`; a box model's data reads none; a dataset that cannot give masks is refused with a ConfigError."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from framework.config import CONFIG_DIR
from framework.config.cli import check_overrides
from framework.config.validation import ConfigError, group_options
from framework.engine.build import build_dataset, model_needs_masks

MASK_MODELS = {"mask_rcnn_r50_fpn", "yolo_seg_cspdarknet_s"}


class BoxesOnly:
    """A user's dataset class that has no masks to give."""

    def __init__(self, root: str, on_bad_image: str = "error") -> None:
        self.root = root


def compose(shapes_root: Path, *overrides: str):
    return check_overrides("train", [f"dataset.root={shapes_root}", *overrides])


@pytest.mark.parametrize("model", group_options(CONFIG_DIR, "model"))
def test_exactly_the_mask_models_ask_for_masks(model, shapes_root):
    assert model_needs_masks(compose(shapes_root, f"model={model}").model) == (model in MASK_MODELS)


def test_a_mask_model_gets_masks_and_a_box_model_none(shapes_root):
    mask_cfg = compose(shapes_root, "model=mask_rcnn_r50_fpn")
    with_masks = build_dataset(mask_cfg.dataset.val, "val", mask_cfg.model)
    assert with_masks.with_masks and "masks" in with_masks[0][1]
    box_cfg = compose(shapes_root, "model=retinanet_r50_fpn")
    boxes_only = build_dataset(box_cfg.dataset.val, "val", box_cfg.model)
    assert not boxes_only.with_masks and "masks" not in boxes_only[0][1]
    asked = compose(shapes_root, "model=retinanet_r50_fpn", "+dataset.val.with_masks=true")  # browse_dataset's way
    assert "masks" in build_dataset(asked.dataset.val, "val", asked.model)[0][1]


def test_a_dataset_without_masks_is_refused_for_a_mask_model(shapes_root):
    cfg = compose(shapes_root, "model=yolo_seg_cspdarknet_s")
    node = OmegaConf.create({"_target_": f"{BoxesOnly.__module__}.BoxesOnly", "root": str(shapes_root)})
    with pytest.raises(ConfigError, match=r"trains on instance masks, but dataset.val \(.*BoxesOnly\) has no masks"):
        build_dataset(node, "val", cfg.model)
