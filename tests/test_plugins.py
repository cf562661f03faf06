"""A head, a backbone and a dataset written outside framework/ (here, in this file), against the contracts of
framework/protocols.py only, run through the whole framework: composed into a config (`_target_`s in this module,
allowed with `allow_targets`), trained for a few epochs, evaluated with the COCO evaluator and exported to ONNX
(checked with onnxruntime). Nothing in framework/ knows these classes.

The engine calls sit in `fit` and `evaluation_of` below, and nowhere else. A callback of the test's own
(`LossHistory`) records the losses, through the same `callbacks:` node as the built-in behaviours.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import Tensor, nn

from framework.config import CONFIG_DIR
from framework.data.datasets.base import coco_index, detection_sample
from framework.models.losses import FocalLoss, GIoULoss
from framework.models.ops.anchors import PointGenerator
from framework.models.ops.box_coder import DistanceBoxCoder
from framework.models.ops.point_assigners import CenterSamplingAssigner, default_regress_ranges
from framework.models.ops.postprocess import Postprocessor, topk_per_level
from framework.models.ops.targets import pad_targets
from framework.protocols import Backbone, DetectionDataset, Evaluator, ExportableHead, Head

HERE = __name__  # the dotted name configs use for the classes below (tests.test_plugins under pytest)


# --- the engine, in one place ---------------------------------------------------------------------------------

def fit(cfg: Any) -> Any:
    """Build everything from `cfg` and train; returns the trainer (its `model` is the trained one)."""
    from framework.engine.build import build_trainer

    trainer = build_trainer(cfg)
    trainer.fit()
    return trainer


def evaluation_of(trainer: Any) -> tuple[dict[str, float], Any]:
    """The metrics of the evaluation after the last epoch (the COCO evaluator: `bbox/mAP`, `bbox/mAP_50`, …), and
    the evaluator that computed them."""
    from framework.engine.callbacks import EvalSchedule

    return trainer.results["last"], trainer.callback(EvalSchedule).evaluation.evaluator


class LossHistory:
    """A callback of one's own (`+callbacks.losses._target_=…`): the total loss of every optimizer step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step_end(self, trainer: Any, losses: Any) -> None:
        self.losses.append(sum(losses.values()))


# --- a dataset of one's own: coloured rectangles drawn in memory ------------------------------------------------

class Rectangles(torch.utils.data.Dataset):
    """`num_images` generated `size`×`size` pictures, each with one to three filled rectangles of the class colour
    on a grey, slightly noisy background. Nothing on disk: the ground truth index is built in memory."""

    COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220)}

    def __init__(self, num_images: int = 16, size: int = 64, seed: int = 0,
                 transforms: Callable | None = None) -> None:
        self.transforms = transforms
        self.classes = list(self.COLOURS)
        self.num_classes = len(self.classes)
        self.label_to_cat_id = [1, 2]
        self.cat_id_to_label = {1: 0, 2: 1}
        rng = np.random.default_rng(seed)
        self.ids = list(range(1, num_images + 1))
        self.images, self.boxes, self.labels = [], [], []
        for _ in self.ids:
            image = np.full((size, size, 3), 128, np.uint8) + rng.integers(0, 12, (size, size, 3), dtype=np.uint8)
            boxes, labels = [], []
            for _ in range(rng.integers(1, 4)):
                w, h = rng.integers(size // 4, size // 2, 2)
                x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
                label = int(rng.integers(0, 2))
                image[y0:y0 + h, x0:x0 + w] = self.COLOURS[self.classes[label]]
                boxes.append([x0, y0, x0 + w, y0 + h])
                labels.append(label)
            self.images.append(torch.from_numpy(image).permute(2, 0, 1).contiguous())
            self.boxes.append(np.array(boxes, np.float32))
            self.labels.append(np.array(labels, np.int64))
        self.coco = coco_index(self._coco_dict(size))

    def _coco_dict(self, size: int) -> dict[str, Any]:
        """Rectangles drawn later may cover earlier ones; the ground truth keeps every box, as any annotator
        would (the covered part of a rectangle is still its extent)."""
        anns = []
        for img_id, boxes, labels in zip(self.ids, self.boxes, self.labels):
            for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": self.label_to_cat_id[label],
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        return {"images": [{"id": i, "width": size, "height": size, "file_name": f"{i}.png"} for i in self.ids],
                "annotations": anns,
                "categories": [{"id": c, "name": n} for c, n in zip(self.label_to_cat_id, self.classes)]}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        return detection_sample(self.images[index].clone(), self.boxes[index], self.labels[index],
                                self.ids[index], self.transforms)


# --- a backbone and a head of one's own ------------------------------------------------------------------------

def conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyBackbone(nn.Module):
    """Four strided convolutions: maps at strides 8 and 16."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv(3, width, 2), conv(width, width, 2), conv(width, 2 * width, 2))
        self.down = conv(2 * width, 4 * width, 2)
        self.out_channels = [2 * width, 4 * width]
        self.strides = [8, 16]

    def forward(self, images: Tensor) -> list[Tensor]:
        c3 = self.stem(images)
        return [c3, self.down(c3)]


class TinyPointHead(nn.Module):
    """Anchor-free: one shared 3×3 conv, then per point K class logits and four softplus distances (in strides) to
    the box sides; points near a box centre are its positives (`CenterSamplingAssigner`), focal + GIoU losses.
    `predict` is `dense_predictions` → per-level top-k → `Postprocessor`, which is what makes it exportable."""

    def __init__(self, num_classes: int, in_channels: int | Sequence[int] = 32, strides: Sequence[int] = (8, 16),
                 feat_channels: int = 32, score_thr: float = 0.05, max_per_img: int = 20) -> None:
        super().__init__()
        in_channels = in_channels if isinstance(in_channels, int) else int(in_channels[0])
        self.num_classes, self.strides = num_classes, [int(s) for s in strides]
        self.points = PointGenerator(self.strides)
        self.ranges = default_regress_ranges(self.strides)
        self.assigner = CenterSamplingAssigner(center_sampling=True, radius=1.5)
        self.box_coder = DistanceBoxCoder(normalize=True)
        self.cls_loss, self.box_loss = FocalLoss(), GIoULoss()
        self.postprocess = Postprocessor(score_thr, nms_pre=200, nms_iou_thr=0.5, max_per_img=max_per_img)
        self.tower = conv(in_channels, feat_channels, 1)
        self.cls_out = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.box_out = nn.Conv2d(feat_channels, 4, 3, padding=1)
        nn.init.constant_(self.cls_out.bias, -math.log(99.0))  # prior probability 0.01

    def forward(self, feats: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        cls, dist, sizes = [], [], []
        for f in feats:
            sizes.append((f.shape[-2], f.shape[-1]))
            x = self.tower(f)
            cls.append(self.cls_out(x).flatten(2).transpose(1, 2))
            dist.append(F.softplus(self.box_out(x)).flatten(2).transpose(1, 2))
        return torch.cat(cls, 1), torch.cat(dist, 1), sizes

    def loss(self, feats: Sequence[Tensor], targets: Sequence[dict],
             image_sizes: Sequence[tuple[int, int]] | None = None) -> dict[str, Tensor]:
        cls_logits, dist, sizes = self(feats)
        device = cls_logits.device
        points, strides = self.points.grid_points(sizes, device)
        counts = torch.tensor([h * w for h, w in sizes], device=device)
        ranges = torch.tensor(self.ranges, device=device).repeat_interleave(counts, dim=0)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, device)
        assigned = self.assigner.assign(points, strides, ranges, gt_boxes, gt_valid)
        pos = assigned >= 0
        num_pos = pos.sum().clamp(min=1).float()
        idx = assigned.clamp(min=0)
        labels = torch.where(pos, torch.gather(gt_labels, 1, idx) if gt_labels.shape[1] else idx, -1)
        batch = len(targets)
        pred = self.box_coder.decode(dist[pos], points.expand(batch, -1, -1)[pos], strides.expand(batch, -1)[pos])
        gt = torch.gather(gt_boxes, 1, idx[..., None].expand(-1, -1, 4))[pos] if gt_boxes.shape[1] else pred.detach()
        return {"loss_cls": self.cls_loss.forward_labels(cls_logits, labels) / num_pos,
                "loss_box": self.box_loss(pred, gt) / num_pos}

    def dense_predictions(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[int]]:
        cls_logits, dist, sizes = self(features)
        points, strides = self.points.compute(sizes, cls_logits.device)
        return self.box_coder.decode(dist.float(), points, strides), cls_logits.sigmoid(), [h * w for h, w in sizes]

    @torch.no_grad()
    def predict(self, feats: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
                orig_sizes: Sequence[tuple[int, int]] | None = None) -> list[dict[str, Tensor]]:
        boxes, scores, level_sizes = self.dense_predictions(feats)
        post = self.postprocess
        image_idx, prior_idx, labels, scores = topk_per_level(scores, level_sizes, post.nms_pre, post.score_thr)
        return post(boxes[image_idx, prior_idx], scores, labels, image_idx, self.num_classes, image_sizes, orig_sizes)


# --- the config ---------------------------------------------------------------------------------------------

def plugin_config(work_dir: Path, epochs: int) -> Any:
    """The training config with the model and the dataset replaced by this module's classes; the rest (optimizer,
    schedule, pipeline, evaluation) is the framework's. The scan for unreadable image files before training
    (`dataset.scan_images`, on by default) finds no `image_path(i)` here (these images are no files) and skips."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [
            f"allow_targets=[{HERE}.]", "experiment_name=plugins", f"work_dir={work_dir}", "dataset.root=unused",
            "dataset.min_size=64", "dataset.max_size=96", "dataset.batch_size=8", "dataset.val_batch_size=8",
            "dataset.num_workers=0", "optimizer.lr=0.02", "scheduler.warmup_iters=2", "scheduler.milestones=[0.9]",
            f"trainer.max_epochs={epochs}", "trainer.eval_interval=100", "trainer.progress_bar=false",
            "trainer.device=cpu", "trainer.vis_images=0", "evaluation.plots=false",
            "callbacks.metrics_log.plot=false",  # results.png: seconds of matplotlib
            f"+callbacks.losses._target_={HERE}.LossHistory"])
    cfg.model = OmegaConf.create({
        "_target_": "framework.models.Detector",
        "backbone": {"_target_": f"{HERE}.TinyBackbone", "width": 16},
        "neck": {"_target_": "framework.models.necks.FPN", "_partial_": True, "out_channels": 32, "num_outs": 2},
        "head": {"_target_": f"{HERE}.TinyPointHead", "_partial_": True, "num_classes": "${dataset.num_classes}",
                 "feat_channels": 32, "score_thr": 0.05},
    })
    cfg.dataset.train = OmegaConf.create({"_target_": f"{HERE}.Rectangles", "num_images": 32, "seed": 0})
    cfg.dataset.val = OmegaConf.create({"_target_": f"{HERE}.Rectangles", "num_images": 8, "seed": 1})
    return cfg


# --- the tests ----------------------------------------------------------------------------------------------

def test_the_plugins_meet_the_protocols():
    dataset = Rectangles(num_images=2)
    assert isinstance(dataset, DetectionDataset)
    image, target = dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)
    assert target["labels"].dtype == torch.int64 and target["boxes"].format.value == "XYXY"
    assert isinstance(TinyBackbone(), Backbone)
    head = TinyPointHead(num_classes=2)
    assert isinstance(head, Head) and isinstance(head, ExportableHead)


def test_a_plugin_head_and_dataset_train_evaluate_and_export(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from framework.export import export_onnx, verify_onnx

    cfg = plugin_config(tmp_path / "run", epochs=16)
    trainer = fit(cfg)
    model = trainer.model
    assert isinstance(model.head, TinyPointHead) and isinstance(model.backbone, TinyBackbone)
    losses = trainer.callback(LossHistory).losses
    assert len(losses) == 16 * 4 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-4:]) < sum(losses[:4])

    metrics, evaluator = evaluation_of(trainer)
    assert isinstance(evaluator, Evaluator)
    assert set(metrics) >= {"bbox/mAP", "bbox/mAP_50"} and 0.0 <= metrics["bbox/mAP"] <= 1.0
    assert metrics["bbox/mAP_50"] > 0.25, metrics  # it learnt: 0.48-0.79 at seeds 0-2, ~0 untrained

    path = export_onnx(model, tmp_path / "plugin.onnx", (64, 64), nms=True, dynamic=False)
    val = Rectangles(num_images=4, seed=1)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    images = [(val[i][0].float() / 255 - mean) / std for i in range(len(val))]
    report = verify_onnx(path, model, images)
    assert report.ok and report.compared > 0, report.summary()
