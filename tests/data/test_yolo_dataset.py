"""YOLODataset on hand-written ultralytics folders: data.yaml variants, label pairing, polygons, backgrounds, malformed
rows, the COCO ground truth, and the `dataset=yolo` config."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from torchvision import tv_tensors

from framework.config.cli import check_overrides
from framework.data.bad_images import screen_dataset
from framework.data.classes import check_num_classes, classes_source
from framework.data.datasets.coco import DatasetNotFoundError
from framework.data.datasets.yolo import YOLODataset, label_path
from framework.data.errors import DatasetError
from framework.data.pipeline_dataset import PipelineDataset
from framework.data.scan import scan_images
from framework.evaluation.build import build_evaluator

W, H = 40, 20


def write_image(path: Path, size: tuple[int, int] = (W, H), fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path, format=fmt)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def yolo_root(tmp_path: Path) -> Path:
    """Two train images (a box row and a polygon row; a box, a background), one val image, names as a list."""
    root = tmp_path / "ds"
    write_image(root / "images/train/a.jpg")
    write_image(root / "images/train/b.png", fmt="PNG")
    write_image(root / "images/val/c.jpg")
    # a: box centred at (10, 5) of size 8x4 px; triangle (20,2) (30,2) (25,12)
    write(root / "labels/train/a.txt", "0 0.25 0.25 0.2 0.2\n\n1 0.5 0.1 0.75 0.1 0.625 0.6\n")
    write(root / "labels/train/b.txt", "")
    write(root / "labels/val/c.txt", "1 0.5 0.5 0.5 0.5\n")
    write(root / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n")
    return root


def test_sample_contract_pixels_and_metadata(yolo_root: Path) -> None:
    ds = YOLODataset(str(yolo_root / "data.yaml"), "train")
    assert len(ds) == 2 and ds.classes == ["cat", "dog"] and ds.num_classes == 2
    assert ds.ids == [1, 2] and ds.image_id(-1) == 2
    assert ds.image_path(0) == yolo_root / "images/train/a.jpg"
    assert ds.label_path(1) == yolo_root / "labels/train/b.txt"
    assert ds.get_image_info(0) == {"id": 1, "file_name": "images/train/a.jpg", "height": H, "width": W}
    image, target = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, H, W)
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["orig_size"] == (H, W)
    np.testing.assert_allclose(target["boxes"].numpy(), [[6, 3, 14, 7], [20, 2, 30, 12]], atol=1e-4)
    assert target["labels"].tolist() == [0, 1] and target["image_id"] == 1
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].dtype == torch.int64
    assert "YOLODataset(" in repr(ds) and "images=2" in repr(ds)
    assert "names of" in classes_source(ds) and check_num_classes(None, ds) == 2


def test_polygons_are_kept_compactly(yolo_root: Path) -> None:
    ds = YOLODataset(str(yolo_root / "data.yaml"), "train")
    box_row, triangle = ds.polygons(0)
    assert box_row.shape == (0, 2)
    np.testing.assert_allclose(triangle, [[20, 2], [30, 2], [25, 12]], atol=1e-4)
    assert ds.polygons(1) == []
    assert ds._points.dtype == np.float32 and ds._points.shape == (3, 2)  # one flat array, not one per object
    seg = [a for a in ds.coco.dataset["annotations"] if "segmentation" in a]
    assert len(seg) == 1 and np.allclose(seg[0]["segmentation"][0], [20, 2, 30, 2, 25, 12], atol=1e-4)


def test_txt_lists_lists_of_entries_and_paths(tmp_path: Path, yolo_root: Path, monkeypatch) -> None:
    # A .txt list (`./` lines from the list's folder, others from the root) and a folder, in one list entry.
    write(yolo_root / "lists/extra.txt", "./more/d.jpg\nimages/val/c.jpg\n\n")
    write_image(yolo_root / "lists/more/d.jpg")
    write(yolo_root / "lists/more/d.txt", "1 0.5 0.5 0.2 0.2\n")  # no images/ component: the label sits beside
    cfg = tmp_path / "configs" / "mine.yaml"  # `path` relative to the yaml's folder, not to the working directory
    write(cfg, "path: ../ds\ntrain: [images/train, lists/extra.txt]\nnames: {0: cat, 1: dog}\n")
    monkeypatch.chdir(tmp_path / "configs")
    ds = YOLODataset(str(cfg.name), "train")
    names = [ds.get_image_info(i)["file_name"] for i in range(len(ds))]
    assert names == ["images/train/a.jpg", "images/train/b.png", "images/val/c.jpg", "lists/more/d.jpg"]
    assert [len(ds.get_annotation(i)["labels"]) for i in range(len(ds))] == [2, 0, 1, 1]
    # No `path`: the yaml's folder; Roboflow's `../train/images` beside the yaml.
    write(yolo_root / "rf.yaml", "train: ../images/train\nnames: [cat, dog]\nnc: 2\n")
    assert len(YOLODataset(str(yolo_root / "rf.yaml"))) == 2


def test_label_pairing_replaces_the_last_images_folder() -> None:
    assert label_path("/d/images/x/images/train/a.b.jpg") == Path("/d/images/x/labels/train/a.b.txt")
    assert label_path("/d/pics/a.png") == Path("/d/pics/a.txt")
    assert label_path("/d/images.jpg") == Path("/d/images.txt")


@pytest.mark.parametrize("names,error", [
    ("{1: dog, 0: cat}", None),
    ("{0: cat, 2: dog}", "keys of `names` must be the class ids 0..1"),
    ("[cat, cat]", "more than once"),
    ("[]", "non-empty"),
])
def test_names_forms(yolo_root: Path, names: str, error: str | None) -> None:
    write(yolo_root / "data.yaml", f"train: images/train\nnames: {names}\n")
    if error is None:
        assert YOLODataset(str(yolo_root / "data.yaml")).classes == ["cat", "dog"]
    else:
        with pytest.raises(DatasetError, match=error):
            YOLODataset(str(yolo_root / "data.yaml"))


def test_nc_must_agree_and_can_stand_alone(yolo_root: Path) -> None:
    write(yolo_root / "data.yaml", "train: images/train\nnc: 3\nnames: [cat, dog]\n")
    with pytest.raises(DatasetError, match="`nc: 3` but `names` lists 2"):
        YOLODataset(str(yolo_root / "data.yaml"))
    write(yolo_root / "data.yaml", "train: images/train\nnc: 2\n")
    assert YOLODataset(str(yolo_root / "data.yaml")).classes == ["class0", "class1"]
    assert YOLODataset(str(yolo_root / "data.yaml"), classes=["a", "b"]).classes == ["a", "b"]


def test_backgrounds_and_missing_label_files(yolo_root: Path, caplog) -> None:
    (yolo_root / "labels/train/a.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="framework"):
        ds = YOLODataset(str(yolo_root / "data.yaml"))
    warnings = [r.getMessage() for r in caplog.records if "label file" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 2 images have no label file" in warnings[0] and "a.txt" in warnings[0]
    assert len(ds) == 2 and all(len(ds.get_annotation(i)["boxes"]) == 0 for i in range(2))
    write(yolo_root / "labels/train/a.txt", "0 0.5 0.5 0.5 0.5\n")
    kept = YOLODataset(str(yolo_root / "data.yaml"), filter_empty=True)
    assert len(kept) == 1 and kept.image_id(0) == 1


@pytest.mark.parametrize("row,expected", [
    ("0 0.5 0.5 0.2", "4 values; expected 5"),
    ("0 0.1 0.1 0.2 0.2 0.3", "6 values"),
    ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4", "8 values"),
    ("0 0.5 abc 0.2 0.2", "'abc' is not a number"),
    ("2 0.5 0.5 0.2 0.2", "class id 2 is not one of the 2 classes"),
    ("-1 0.5 0.5 0.2 0.2", "class id -1"),
    ("0.5 0.5 0.5 0.2 0.2", "class id 0.5"),
    ("0 0.5 0.5 -0.2 0.2", "negative width or height"),
    ("0 nan 0.5 0.2 0.2", "NaN or infinite"),
    ("1 0.5 0.5 0.2 inf", "NaN or infinite"),
])
def test_malformed_rows_name_file_and_line(yolo_root: Path, row: str, expected: str) -> None:
    bad = write(yolo_root / "labels/train/b.txt", f"1 0.5 0.5 0.1 0.1\n{row}\n")
    with pytest.raises(DatasetError, match=expected) as info:
        YOLODataset(str(yolo_root / "data.yaml"))
    assert f"{bad}, line 2:" in str(info.value)


def test_degenerate_boxes_are_clipped_or_dropped_and_counted(yolo_root: Path, caplog) -> None:
    write(yolo_root / "labels/train/b.txt", "0 0.95 0.5 0.2 0.2\n0 0.5 0.5 0 0.2\n1 1.5 0.5 0.2 0.2\n"
                                            "1 0.9 0.9 0.2 0.2000004\n")
    with caplog.at_level(logging.WARNING, logger="framework"):
        ds = YOLODataset(str(yolo_root / "data.yaml"))
    assert ds.box_report == {"clipped": 1, "dropped_empty": 1, "dropped_nonfinite": 0, "dropped_outside": 1}
    assert "b.txt, line 2" in caplog.text and "b.txt, line 1" in caplog.text  # rounding at the border is no clip
    np.testing.assert_allclose(ds.get_annotation(1)["boxes"], [[34, 8, 40, 12], [32, 16, 40, 20]], atol=1e-4)


def test_coco_ground_truth_equals_the_labels(yolo_root: Path) -> None:
    ds = YOLODataset(str(yolo_root / "data.yaml"))
    evaluator = build_evaluator(ds, "coco")
    dets = []
    for i in range(len(ds)):
        gt = ds.get_annotation(i)
        dets.append({"boxes": torch.as_tensor(gt["boxes"]), "labels": torch.as_tensor(gt["labels"]),
                     "scores": torch.ones(len(gt["labels"]))})
    evaluator.process(ds.ids, dets)
    assert evaluator.evaluate()["bbox/mAP"] == pytest.approx(1.0)
    assert [c["name"] for c in ds.coco.dataset["categories"]] == ["cat", "dog"]


def test_missing_files_and_splits_are_named(yolo_root: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist") as info:
        YOLODataset(str(yolo_root / "dat.yaml"))
    assert "did you mean" in str(info.value) and "data.yaml" in str(info.value)
    text = (yolo_root / "data.yaml").read_text()  # ultralytics' own keys are no splits
    write(yolo_root / "data.yaml", text + "download: |\n  import os\n  print(1)\nkpt_shape: [17, 3]\n")
    with pytest.raises(DatasetError, match=r"has no 'test' split \(its splits: train, val\)"):
        YOLODataset(str(yolo_root / "data.yaml"), "test")
    write(yolo_root / "data.yaml", "train: images/trian\nnames: [cat, dog]\n")
    with pytest.raises(DatasetNotFoundError, match="Image folder or list") as info:
        YOLODataset(str(yolo_root / "data.yaml"))
    assert "images/train" in str(info.value) and "'train' entry 'images/trian'" in str(info.value)
    write(yolo_root / "data.yaml", "train: labels/train\nnames: [cat, dog]\n")
    with pytest.raises(DatasetError, match="holds no images"):
        YOLODataset(str(yolo_root / "data.yaml"))
    write(yolo_root / "data.yaml", "train: [images/train\nnames: [cat]\n")
    with pytest.raises(DatasetError, match=r"Could not parse .*data.yaml.* at line \d+, column \d+"):
        YOLODataset(str(yolo_root / "data.yaml"))


def test_unreadable_image_is_left_to_the_image_check(yolo_root: Path, caplog) -> None:
    (yolo_root / "images/train/b.png").write_bytes(b"not an image")
    write(yolo_root / "labels/train/b.txt", "0 0.5 0.5 0.5 0.5\n")
    with caplog.at_level(logging.WARNING, logger="framework"):
        ds = YOLODataset(str(yolo_root / "data.yaml"))
    assert "1 image whose size cannot be read" in caplog.text and len(ds.get_annotation(1)["boxes"]) == 0
    assert [b.index for b in scan_images(ds)] == [1]
    kept = screen_dataset(ds, "train", on_bad_image="skip")
    assert len(kept) == 1 and kept.coco.getImgIds() == [1]


def test_pickles_without_the_coco_index(yolo_root: Path) -> None:
    ds = YOLODataset(str(yolo_root / "data.yaml"))
    assert ds.coco is not None
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._coco is None and copy.get_annotation(0)["labels"].tolist() == [0, 1]


def test_dataset_yolo_config_composes_and_instantiates(yolo_root: Path) -> None:
    cfg = check_overrides("train", ["dataset=yolo", f"dataset.data={yolo_root / 'data.yaml'}",
                                    "dataset.min_size=64", "dataset.max_size=96"])
    assert cfg.dataset.num_classes is None and cfg.dataset.root == str(yolo_root / "data.yaml")
    for split in ("train", "val"):
        ds = PipelineDataset(instantiate(cfg.dataset[split]), instantiate(cfg.pipeline[split]))
        image, target = ds[0]
        assert image.dtype == torch.float32 and image.shape[0] == 3 and max(image.shape[-2:]) <= 96
        assert check_num_classes(cfg.dataset.num_classes, ds.dataset) == 2
