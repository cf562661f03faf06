"""CocoDetection on a tiny hand-built COCO folder with the awkward cases real data has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from framework.data.errors import BadImageError
from framework.data.datasets.coco import CocoDetection, DatasetNotFoundError

ANN = "annotations/instances_train.json"


def _write_tiny_coco(root: Path) -> Path:
    """3 images: two annotated (W×H 48×32 and 32×40, the latter grayscale), one empty.

    Categories use sparse ids 1, 3, 7. Image 1 has a crowd box, a degenerate box and a
    box sticking out of the image.
    """
    (root / "annotations").mkdir(parents=True)
    (root / "imgs").mkdir()
    Image.new("RGB", (48, 32), (200, 10, 10)).save(root / "imgs" / "a.jpg")
    Image.new("L", (32, 40), 128).save(root / "imgs" / "b.jpg")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(root / "imgs" / "c.jpg")
    data = {
        "images": [  # deliberately unsorted
            {"id": 3, "file_name": "c.jpg", "width": 20, "height": 20},
            {"id": 1, "file_name": "a.jpg", "width": 48, "height": 32},
            {"id": 2, "file_name": "b.jpg", "width": 32, "height": 40},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 8], "area": 80, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [30, 20, 30, 20], "area": 600, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1},
            {"id": 4, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 4], "area": 0, "iscrowd": 0},
            {"id": 5, "image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0},
        ],
        "categories": [
            {"id": 7, "name": "seven", "supercategory": "x"},
            {"id": 1, "name": "one", "supercategory": "x"},
            {"id": 3, "name": "three", "supercategory": "x"},
        ],
    }
    (root / ANN).write_text(json.dumps(data))
    return root


@pytest.fixture()
def coco_root(tmp_path: Path) -> Path:
    return _write_tiny_coco(tmp_path / "coco")


def test_label_mapping_both_ways(coco_root: Path) -> None:
    ds = CocoDetection(str(coco_root), ANN, "imgs")
    assert ds.cat_ids == [1, 3, 7]
    assert ds.classes == ["one", "three", "seven"]
    assert ds.cat_id_to_label == {1: 0, 3: 1, 7: 2}
    assert ds.label_to_cat_id == [1, 3, 7]
    assert ds.num_classes == 3
    assert all(ds.label_to_cat_id[ds.cat_id_to_label[c]] == c for c in ds.cat_ids)
    assert ds.ids == [1, 2, 3] and len(ds) == 3
    assert ds.ann_file == str((coco_root / ANN).resolve())


def test_sample_contract_crowd_and_degenerate(coco_root: Path) -> None:
    ds = CocoDetection(str(coco_root), ANN, "imgs")
    image, target = ds[0]
    assert isinstance(image, tv_tensors.Image)
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 32, 48)
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes)
    assert boxes.format == tv_tensors.BoundingBoxFormat.XYXY
    assert tuple(boxes.canvas_size) == (32, 48) and boxes.dtype == torch.float32
    # xywh → xyxy, the second box clipped to the image; crowd and degenerate left out.
    torch.testing.assert_close(
        boxes.as_subclass(torch.Tensor), torch.tensor([[2.0, 3.0, 12.0, 11.0], [30.0, 20.0, 48.0, 32.0]])
    )
    assert target["labels"].dtype == torch.int64
    assert target["labels"].tolist() == [0, 2]
    assert target["image_id"] == 1 and isinstance(target["image_id"], int)
    assert target["orig_size"] == (32, 48)

    gray, t2 = ds[1]  # grayscale file still gives 3 channels
    assert tuple(gray.shape) == (3, 40, 32)
    assert t2["labels"].tolist() == [1]


def test_empty_image_and_filter_empty(coco_root: Path) -> None:
    ds = CocoDetection(str(coco_root), ANN, "imgs")
    _, target = ds[2]
    assert target["image_id"] == 3
    assert tuple(target["boxes"].shape) == (0, 4)
    assert tuple(target["labels"].shape) == (0,) and target["labels"].dtype == torch.int64
    filtered = CocoDetection(str(coco_root), ANN, "imgs", filter_empty=True)
    assert filtered.ids == [1, 2]


def test_absolute_paths(coco_root: Path, tmp_path: Path) -> None:
    ds = CocoDetection(str(tmp_path / "elsewhere"), str(coco_root / ANN), str(coco_root / "imgs"))
    assert len(ds) == 3


def test_missing_root_shows_layout_and_override(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetNotFoundError) as info:
        CocoDetection(str(missing), ANN, "train2017")
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(missing) in msg
    assert "├── annotations/" in msg and "└── instances_train.json" in msg
    assert "└── train2017/" in msg
    assert "dataset.root=/path/to/coco" in msg


def test_missing_annotation_and_image_folder(coco_root: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="instances_val.json"):
        CocoDetection(str(coco_root), "annotations/instances_val.json", "imgs")
    with pytest.raises(DatasetNotFoundError, match="val2017"):
        CocoDetection(str(coco_root), ANN, "val2017")


def test_broken_json_names_file_and_position(coco_root: Path) -> None:
    bad = coco_root / "annotations" / "broken.json"
    bad.write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(ValueError) as info:
        CocoDetection(str(coco_root), "annotations/broken.json", "imgs")
    msg = str(info.value)
    assert str(bad) in msg and "line 2" in msg and "column" in msg


def test_missing_or_corrupt_image_names_path(coco_root: Path) -> None:
    ds = CocoDetection(str(coco_root), ANN, "imgs")
    (coco_root / "imgs" / "b.jpg").unlink()
    with pytest.raises(BadImageError, match="b.jpg: the file .* does not exist"):
        ds[1]
    (coco_root / "imgs" / "c.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(BadImageError, match="c.jpg: it cannot be decoded"):
        ds[2]


def test_works_with_transforms_v2(coco_root: Path) -> None:
    pipeline = v2.Compose([v2.Resize((64, 96)), v2.RandomHorizontalFlip(p=1.0)])
    ds = CocoDetection(str(coco_root), ANN, "imgs", transforms=pipeline)
    image, target = ds[0]
    assert tuple(image.shape) == (3, 64, 96)
    assert tuple(target["boxes"].canvas_size) == (64, 96)
    # ×2 scale, then mirrored in a 96-pixel-wide canvas.
    torch.testing.assert_close(
        target["boxes"].as_subclass(torch.Tensor),
        torch.tensor([[72.0, 6.0, 92.0, 22.0], [0.0, 40.0, 36.0, 64.0]]),
    )
    assert target["labels"].tolist() == [0, 2]
    assert target["image_id"] == 1 and target["orig_size"] == (32, 48)
