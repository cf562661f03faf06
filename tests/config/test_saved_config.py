"""Checkpoints written before a setting existed still evaluate: the setting takes its schema default."""
from omegaconf import OmegaConf

from framework.config.cli import check_overrides
from framework.config.overrides import merge_saved_config


def test_old_checkpoint_config_gets_new_settings_with_their_defaults(shapes_root):
    saved = OmegaConf.to_container(check_overrides("train", [f"dataset.root={shapes_root}"]), resolve=False)
    composed = check_overrides("test", ["checkpoint=/tmp/old/checkpoints/best.pth", "dataset.val_batch_size=1"])
    composed.work_dir = "/tmp/old/eval"  # Hydra's runtime sets it in a real run
    del saved["dataset"]["metric"], saved["evaluation"]  # as written before issue 5
    saved["experiment_name"], saved["work_dir"] = "old", "/tmp/old"
    cfg = merge_saved_config(saved, composed, ["dataset.val_batch_size=1"])
    assert cfg.dataset.metric == "coco" and cfg.evaluation.backend == "pycocotools" and cfg.evaluation.plots
    assert cfg.dataset.val_batch_size == 1 and cfg.dataset.root == str(shapes_root)
    assert cfg.model._target_ == composed.model._target_
