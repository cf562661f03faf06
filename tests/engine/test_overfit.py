"""Convergence check: the RetinaNet detector, built without Hydra and trained by the Trainer, overfits a handful of
shapes images (mAP@0.5 >= 0.9 on those same images)."""
from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.utils.data import ConcatDataset, Subset

from framework.data.datasets.shapes import ShapesDataset
from framework.data.loader import build_dataloader
from framework.data.transforms import Normalize
from framework.engine.callbacks import Checkpoint, EvalSchedule
from framework.engine.evaluation import Evaluation
from framework.engine.trainer import Trainer
from framework.engine.schedulers import WarmupMultiStepLR
from framework.evaluation.coco import CocoEvaluator
from framework.models import Detector
from framework.models.backbones import ResNet
from framework.models.heads import RetinaHead
from framework.models.losses import GIoULoss
from framework.models.necks import FPN
from torchvision.transforms import v2


def overfit(shapes_root, tmp_path, model, make_optimizer, epochs: int, milestone: int) -> tuple[dict, list]:
    """Train `model` by the Trainer on 4 shapes images (each seen 8 times per epoch) and evaluate it on them at the
    end; returns the final metrics and the evaluated image ids. Shared with the YOLO head's overfit check."""
    pipeline = v2.Compose([v2.Resize(96, max_size=144), Normalize()])
    data = ShapesDataset(str(shapes_root), split="train", transforms=pipeline)
    few = Subset(data, list(range(4)))
    train_loader = build_dataloader(ConcatDataset([few] * 8), batch_size=4, shuffle=True, drop_last=True)
    optimizer = make_optimizer(model.parameters())
    scheduler = WarmupMultiStepLR(optimizer, milestones=[milestone], warmup_iters=20,
                                  iters_per_epoch=len(train_loader))
    evaluator = CocoEvaluator(data.coco, data.label_to_cat_id, data.classes)
    evaluation = Evaluation(build_dataloader(few, batch_size=4), evaluator, progress_bar=False)
    callbacks = [EvalSchedule(evaluation, interval=epochs), Checkpoint("bbox/mAP", interval=0, keep=None)]
    result = Trainer(model, train_loader, optimizer, scheduler, callbacks, work_dir=tmp_path, max_epochs=epochs,
                     log_interval=20).fit()
    assert sorted(evaluator.image_ids) == sorted(data.ids[:4]) and (tmp_path / "checkpoints" / "best.pth").is_file()
    return result["last"], evaluator.summary


@pytest.mark.slow
def test_retinanet_overfits_a_few_images(shapes_root, tmp_path):
    torch.manual_seed(0)
    model = Detector(
        ResNet(depth=18),
        partial(FPN, out_channels=64, num_outs=5),
        partial(RetinaHead, num_classes=4, feat_channels=64, stacked_convs=2, norm="gn", octave_base_scale=2.0,
                box_loss=GIoULoss()),
    )
    sgd = partial(torch.optim.SGD, lr=0.02, momentum=0.9, weight_decay=1e-4)
    metrics, summary = overfit(shapes_root, tmp_path, model, sgd, epochs=12, milestone=9)  # mAP@0.5 0.98 / 0.97 (seeds 0/1)
    assert metrics["bbox/mAP_50"] >= 0.9, summary
