"""The built-in components meet the runtime-checkable protocols of framework/protocols.py: every model config's
backbone, neck and head, every dataset class, both evaluators. `isinstance` with a protocol checks that the
members exist (not their signatures); tests/test_plugins.py runs components written against the protocols alone.
"""
from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torchvision.io import write_png

from framework.config import CONFIG_DIR
from framework.data.datasets.cityscapes import CityscapesDetection
from framework.data.datasets.shapes import ShapesDataset
from framework.data.datasets.shapes_cityscapes import write_shapes_cityscapes
from framework.data.datasets.shapes_voc import write_shapes_voc
from framework.data.datasets.voc import VOCDetection
from framework.data.datasets.yolo import YOLODataset
from framework.data.pipeline_dataset import PipelineDataset
from framework.evaluation.build import build_evaluator, ground_truth
from framework.protocols import Backbone, DetectionDataset, Evaluator, ExportableHead, Head, Neck

MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
TWO_STAGE = {"faster_rcnn_r50_fpn", "mask_rcnn_r50_fpn"}


@pytest.mark.parametrize("name", MODELS)
def test_model_parts_meet_the_protocols(name, shapes_root):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [f"model={name}", "dataset.num_classes=3", f"dataset.root={shapes_root}"])
    model = instantiate(cfg.model)
    assert isinstance(model.backbone, Backbone) and isinstance(model.neck, Neck)
    assert isinstance(model.head, Head)
    # the one-stage heads can be exported (dense_predictions); the two-stage head cannot
    assert isinstance(model.head, ExportableHead) == (name not in TWO_STAGE)
    if name not in TWO_STAGE:
        with torch.no_grad():
            feats = model.eval().extract_features(torch.zeros(1, 3, 64, 96))
            boxes, scores, level_sizes = model.head.dense_predictions(feats)
        assert boxes.shape == (1, sum(level_sizes), 4) and scores.shape == (1, sum(level_sizes), 3)
        assert len(level_sizes) == len(feats)


def _datasets(shapes_root, tmp_path_factory):
    voc = write_shapes_voc(tmp_path_factory.mktemp("voc") / "voc", num_train=2, num_val=2)
    cityscapes = write_shapes_cityscapes(tmp_path_factory.mktemp("cs") / "cs", num_train=2, num_val=2)
    yolo = tmp_path_factory.mktemp("yolo")
    (yolo / "images" / "val").mkdir(parents=True)
    (yolo / "labels" / "val").mkdir(parents=True)
    write_png(torch.full((3, 40, 60), 128, dtype=torch.uint8), str(yolo / "images" / "val" / "a.png"))
    (yolo / "labels" / "val" / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (yolo / "data.yaml").write_text("train: images/val\nval: images/val\nnames: [cat, dog]\n")
    return {"coco": ShapesDataset(str(shapes_root), "val"),
            "yolo": YOLODataset(str(yolo / "data.yaml"), "val"),
            "voc": VOCDetection(str(voc), ["2007"], "val"),
            "cityscapes": CityscapesDetection(str(cityscapes), "val")}


def test_datasets_and_evaluators_meet_the_protocols(shapes_root, tmp_path_factory):
    for kind, dataset in _datasets(shapes_root, tmp_path_factory).items():
        assert isinstance(dataset, DetectionDataset), kind
        assert isinstance(PipelineDataset(dataset, None), DetectionDataset), kind  # the wrapper passes them on
        image, target = dataset[0]
        assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3
        assert target["boxes"].format.value == "XYXY" and target["labels"].dtype == torch.int64
        assert {"image_id", "orig_size"} <= set(target)
        assert len(dataset.classes) == dataset.num_classes == len(dataset.label_to_cat_id)
        assert {dataset.cat_id_to_label[c] for c in dataset.label_to_cat_id} == set(range(dataset.num_classes))
        assert len(ground_truth(dataset)) == len(dataset)  # what the evaluators read
        for metric in ("coco", "voc07"):
            evaluator = build_evaluator(dataset, metric)
            assert isinstance(evaluator, Evaluator), (kind, metric)
            evaluator.process([target["image_id"]], [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                                                      "labels": torch.zeros(0, dtype=torch.int64)}])
            metrics = evaluator.evaluate()
            assert evaluator.primary_metric in metrics and evaluator.summary and evaluator.per_class
