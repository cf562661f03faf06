"""The behaviour every dataset inherits from DetectionDatasetBase, checked once per format on the shapes pictures."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from framework.data.datasets.base import DetectionDatasetBase, box_annotations, clip_boxes
from framework.data.datasets.cityscapes import CityscapesDetection
from framework.data.datasets.coco import CocoDetection
from framework.data.datasets.shapes import ShapesDataset
from framework.data.datasets.voc import VOCDetection
from framework.data.datasets.yolo import YOLODataset
from framework.protocols import DetectionDataset

OPENERS: dict[str, Callable[[Any], DetectionDatasetBase]] = {
    "coco": lambda r: CocoDetection(str(r["coco"]), "annotations/instances_val.json", "images/val"),
    "shapes": lambda r: ShapesDataset(str(r["coco"]), split="val"),
    "voc": lambda r: VOCDetection(str(r["voc"]), years=["2007"], image_set="val"),
    "cityscapes": lambda r: CityscapesDetection(str(r["cityscapes"]), split="val"),
    "yolo": lambda r: YOLODataset(str(r["yolo"] / "data.yaml"), split="val"),
}


@pytest.fixture(params=sorted(OPENERS))
def dataset(request: pytest.FixtureRequest, shapes_root: Path, shapes_voc_root: Path,
            shapes_cityscapes_root: Path, shapes_yolo_root: Path) -> DetectionDatasetBase:
    roots = {"coco": shapes_root, "voc": shapes_voc_root, "cityscapes": shapes_cityscapes_root,
             "yolo": shapes_yolo_root}
    return OPENERS[request.param](roots)


def test_every_format_meets_the_protocol_through_the_base(dataset: DetectionDatasetBase) -> None:
    assert isinstance(dataset, DetectionDatasetBase) and isinstance(dataset, DetectionDataset)
    assert len(dataset) == len(dataset.ids) == 8 and dataset.num_classes == len(dataset.classes)
    assert [dataset.label_to_cat_id[dataset.cat_id_to_label[c]] for c in dataset.cat_ids] == dataset.cat_ids
    assert f"images={len(dataset)}" in repr(dataset) and repr(dataset).startswith(type(dataset).__name__ + "(")


def test_samples_follow_the_contract_and_negative_indices_count_from_the_end(dataset: DetectionDatasetBase) -> None:
    image, target = dataset[-1]
    last = len(dataset) - 1
    assert target["image_id"] == dataset.image_id(-1) == dataset.image_id(last)
    torch.testing.assert_close(target["boxes"], dataset[last][1]["boxes"])
    info = dataset.get_image_info(-1)
    assert (info["height"], info["width"]) == target["orig_size"] == tuple(image.shape[-2:])
    assert dataset.image_path(-1).is_file() and dataset.image_path(-1).name == Path(info["file_name"]).name
    h, w = target["orig_size"]
    boxes = target["boxes"]
    assert image.dtype == torch.uint8 and target["labels"].dtype == torch.int64
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all()
    assert (boxes[:, 3] <= h).all() and ((0 <= target["labels"]) & (target["labels"] < dataset.num_classes)).all()
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_coco_index_is_lazy_and_not_pickled(dataset: DetectionDatasetBase) -> None:
    assert dataset._coco is None
    ids = set(dataset.coco.getImgIds())
    assert {dataset.image_id(i) for i in range(len(dataset))} <= ids and dataset._coco is not None
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._coco is None and copy.image_id(0) == dataset.image_id(0)


def test_clip_boxes_cuts_to_the_image_and_drops_what_is_left_empty() -> None:
    boxes = np.array([[-5, 2, 10, 8], [20, 0, 30, 5], [3, 3, 3, 9]], dtype=np.float32)
    clipped, labels = clip_boxes(boxes, np.array([0, 1, 2]), height=10, width=12)
    assert clipped.tolist() == [[0, 2, 10, 8]] and labels.tolist() == [0]


def test_box_annotations_are_coco_records() -> None:
    anns = box_annotations(7, [[1.0, 2.0, 4.0, 6.0], [0.0, 0.0, 2.0, 2.0]], [0, 3], first_id=5, areas=[9, 3],
                           iscrowd=[0, 1])
    assert anns[0] == {"id": 5, "image_id": 7, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "area": 9.0,
                       "iscrowd": 0}
    assert anns[1]["id"] == 6 and anns[1]["category_id"] == 4 and anns[1]["iscrowd"] == 1
    assert box_annotations(1, [[0, 0, 2, 3]], [1], first_id=1)[0]["area"] == 6
