"""CocoDetection on a tiny hand-built COCO folder with the awkward cases real data has."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from framework.data.errors import BadImageError, DatasetError
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
    with pytest.raises(DatasetError) as info:  # printed by the tools without a traceback
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


def test_degenerate_boxes_are_counted_and_reported_once(coco_root: Path, caplog) -> None:
    data = json.loads((coco_root / ANN).read_text())
    data["annotations"] += [
        {"id": 6, "image_id": 2, "category_id": 1, "bbox": [1, 1, float("nan"), 3], "area": 0, "iscrowd": 0},
        {"id": 7, "image_id": 2, "category_id": 1, "bbox": [1, 1, 4, -3], "area": 0, "iscrowd": 0},
        {"id": 8, "image_id": 3, "category_id": 1, "bbox": [25, 25, 4, 4], "area": 16, "iscrowd": 0},  # outside
        {"id": 9, "image_id": 3, "category_id": 1, "bbox": [1, 1, float("inf"), 3], "area": 0, "iscrowd": 1},
        {"id": 10, "image_id": 42, "category_id": 1, "bbox": [1, 1, 4, 3], "area": 12, "iscrowd": 0},
    ]
    (coco_root / ANN).write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="framework"):
        ds = CocoDetection(str(coco_root), ANN, "imgs")
    # Crowd regions are not training boxes: neither counted nor reported.
    assert ds.box_report == {"clipped": 1, "dropped_empty": 2, "dropped_nonfinite": 1, "dropped_outside": 1,
                             "dropped_no_image": 1}
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{ds.ann_file}: 4 boxes dropped (2 zero or negative size, 1 NaN or infinite, 1 outside "
                              "the image) and 1 box clipped to the image, e.g. image 2 annotation 6 (NaN or infinite), "
                              "image 1 annotation 4 (zero or negative size), image 3 annotation 8 (outside the image), "
                              "image 1 annotation 2 (clipped); dropped boxes are left out of training; 1 annotation of "
                              "images not listed in 'images' ignored, e.g. annotation 10 of image 42")
    assert ds[1][1]["labels"].tolist() == [1] and len(ds[2][1]["labels"]) == 0
    assert CocoDetection(str(coco_root), ANN, "imgs", filter_empty=True).ids == [1, 2]


def test_clean_file_reports_nothing(tmp_path: Path, caplog) -> None:
    root = _write_tiny_coco(tmp_path / "c")
    data = json.loads((root / ANN).read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] in (1, 3, 5)]
    (root / ANN).write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="framework"):
        ds = CocoDetection(str(root), ANN, "imgs")
    assert not caplog.records and not any(ds.box_report.values())


def test_annotations_are_arrays_and_the_coco_index_is_lazy(coco_root: Path) -> None:
    ds = CocoDetection(str(coco_root), ANN, "imgs")
    assert ds._coco is None  # nothing built until the evaluator asks
    state = pickle.dumps(ds)  # what a spawned loader worker receives
    assert b"supercategory" not in state and len(state) < 3000
    assert ds.get_image_info(0) == {"id": 1, "file_name": "a.jpg", "height": 32, "width": 48}
    assert ds.image_path(1) == coco_root / "imgs" / "b.jpg" and ds.image_id(2) == 3
    coco = ds.coco
    assert coco is ds.coco and sorted(coco.imgs) == [1, 2, 3] and len(coco.anns) == 5  # the file as written
    assert coco.imgs[1]["file_name"] == "a.jpg" and coco.anns[3]["iscrowd"] == 1
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._coco is None and len(copy.coco.anns) == 5  # not pickled, rebuilt on demand
    for i in range(len(ds)):
        a, b = ds[i][1], copy[i][1]
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])


def test_missing_iscrowd_and_area_are_filled_for_the_evaluator(coco_root: Path) -> None:
    data = json.loads((coco_root / ANN).read_text())
    for ann in data["annotations"]:
        ann.pop("iscrowd"), ann.pop("area")
    (coco_root / ANN).write_text(json.dumps(data))
    coco = CocoDetection(str(coco_root), ANN, "imgs").coco
    assert coco.anns[1]["iscrowd"] == 0 and coco.anns[1]["area"] == 80.0


def test_missing_image_size_is_read_from_the_file(coco_root: Path) -> None:
    data = json.loads((coco_root / ANN).read_text())
    for img in data["images"]:
        del img["width"], img["height"]
    (coco_root / ANN).write_text(json.dumps(data))
    ds = CocoDetection(str(coco_root), ANN, "imgs")
    assert [(ds.get_image_info(i)["height"], ds.get_image_info(i)["width"]) for i in range(3)] == [
        (32, 48), (40, 32), (20, 20)]
    (coco_root / "imgs" / "b.jpg").unlink()
    with pytest.raises(DatasetError, match=r"image 2 \(images\[2\]\) has no height/width, and the size of its "
                                           r"image .*b\.jpg cannot be read"):
        CocoDetection(str(coco_root), ANN, "imgs")


@pytest.mark.parametrize("edit,expected", [
    (lambda d: d["annotations"][1].update(bbox=[30, 20, 30]),
     r"annotation 2 \(annotations\[1\]\) has 'bbox': \[30, 20, 30\], expected \[x, y, width, height\]"),
    (lambda d: d["annotations"][1].update(bbox=[30, 20, "30", 20]), r"annotation 2 \(annotations\[1\]\) has 'bbox'"),
    (lambda d: d["annotations"][1].update(bbox=None), r"annotation 2 \(annotations\[1\]\) has 'bbox': None"),
    (lambda d: d["annotations"][0].pop("bbox"), r"annotation 1 \(annotations\[0\]\) has no 'bbox'"),
    (lambda d: d["annotations"][4].update(category_id=5),
     r"annotation 5 \(annotations\[4\]\) of image 2 has category_id 5, which is not in 'categories' \(ids: 1, 3, "
     r"7\)"),
    (lambda d: d["annotations"][2].update(category_id=5), r"annotation 3 .* category_id 5"),  # crowd too
    (lambda d: d["annotations"][3].update(category_id="1"), r"annotation 4 .* has 'category_id': '1', expected an "),
    (lambda d: d["annotations"][3].pop("id"), r"annotations\[3\] has no 'id'"),
    (lambda d: d["annotations"][3].update(iscrowd="no"), r"annotation 4 .* has 'iscrowd': 'no', expected 0 or 1"),
    (lambda d: d["annotations"].append([1, 2]), r"annotations\[5\] is a list, expected an object"),
    (lambda d: d["images"][1].pop("file_name"), r"image 1 \(images\[1\]\) has no 'file_name'"),
    (lambda d: d["images"][2].pop("id"), r"images\[2\] has no 'id'"),
    (lambda d: d["images"][2].update(id=3), r"image 3 \(images\[2\]\): image id 3 appears twice in 'images' "
                                            r"\(also images\[0\]\)"),
    (lambda d: d["images"][0].update(width="wide"), r"image 3 \(images\[0\]\) has 'width': 'wide', expected a "),
    (lambda d: d["categories"][0].pop("name"), r"category 7 \(categories\[0\]\) has no 'name'"),
    (lambda d: d.update(annotations={"1": {}}), r"'annotations' is a object, expected a list"),
    (lambda d: d.pop("images"), r"is not a COCO detection annotation file"),
], ids=["bbox-3", "bbox-str", "bbox-null", "no-bbox", "category", "crowd-category", "category-str", "no-id",
        "iscrowd", "ann-list", "no-file-name", "no-image-id", "duplicate-image", "width-str", "no-cat-name",
        "anns-object", "no-images"])
def test_malformed_records_name_file_and_position(coco_root: Path, edit, expected: str) -> None:
    data = json.loads((coco_root / ANN).read_text())
    edit(data)
    (coco_root / ANN).write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=expected) as info:
        CocoDetection(str(coco_root), ANN, "imgs")
    assert str((coco_root / ANN).resolve()) in str(info.value) or str(coco_root / ANN) in str(info.value)


def test_undecodable_bytes_name_the_position(coco_root: Path) -> None:
    (coco_root / ANN).write_bytes(b'{"images": [],\n "categories": [{"name": "\xff"}]}')
    with pytest.raises(DatasetError, match=r"instances_train\.json: it is not UTF-8 text \(byte 0xff at line 2, "
                                           r"column 27\)"):
        CocoDetection(str(coco_root), ANN, "imgs")
