"""VOCDetection(with_masks=True) on hand-written VOC2012-style folders: SegmentationObject indices matched to the XML
objects (void 255 in no mask), only the segmented images kept, bad PNGs named with the image id before training (or
left out and counted under on_bad_image=skip), and `coco` carrying the masks as RLE."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framework.data.datasets.voc import VOCDetection
from framework.data.datasets.voc_masks import VOID, read_index_png, voc_palette, write_index_png
from framework.data.errors import BadImageError, DatasetError

from .test_voc_dataset import _obj, _write_year, _xml

W, H = 24, 16
CLASSES = ["cat", "dog"]


def _segmented(root: Path, img_id: str, objects: np.ndarray, classes: np.ndarray | None) -> None:
    year = root / "VOC2012"
    (year / "SegmentationObject").mkdir(exist_ok=True)
    (year / "SegmentationClass").mkdir(exist_ok=True)
    write_index_png(year / "SegmentationObject" / f"{img_id}.png", objects)
    if classes is not None:
        write_index_png(year / "SegmentationClass" / f"{img_id}.png", classes)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """Image a: a cat (object 1, with a void border), a difficult dog (2), a dog (3); image b: no segmentation; image
    c: one cat."""
    root = tmp_path / "VOCdevkit"
    xml_a = _xml(_obj("cat", (3, 3, 8, 10)) + _obj("dog", (10, 2, 14, 6), difficult=1)
                 + _obj("dog", (16, 9, 22, 14)), W, H)
    xml_c = _xml(_obj("cat", (1, 1, 4, 4)), W, H)
    img = Image.new("RGB", (W, H), (90, 90, 90))
    _write_year(root, "2012", {"a": (xml_a, img), "b": (xml_c, img), "c": (xml_c, img)}, {"train": ["a", "b", "c"]})
    (root / "VOC2012" / "classes.txt").write_text("cat\ndog\n")
    objects = np.zeros((H, W), dtype=np.uint8)
    objects[2:10, 2:8] = 1  # VOC boxes are 1-based inclusive: cat (3, 3, 8, 10) is columns 2..7, rows 2..9
    objects[1:6, 9:14] = 2
    objects[8:14, 15:22] = 3
    objects[1, 2:8] = VOID  # void pixels around the cat: part of no mask
    classes = np.where(objects == VOID, VOID, np.asarray([0, 1, 2, 2], dtype=np.uint8)[np.minimum(objects, 3)])
    _segmented(root, "a", objects, classes)
    one = np.zeros((H, W), dtype=np.uint8)
    one[0:4, 0:4] = 1
    _segmented(root, "c", one, None)  # no SegmentationClass PNG: the XML classes are used unchecked
    return root


def test_masks_follow_the_xml_objects_and_only_segmented_images_are_kept(root: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="framework"):
        ds = VOCDetection(str(root), ["2012"], "train", with_masks=True)
    assert "2 of 3 images have SegmentationObject PNGs" in caplog.text
    assert ds.ids == ["a", "c"] and [ds.image_id(i) for i in range(2)] == [1, 3]  # ids stay those of the image set
    image, target = ds[0]
    masks = target["masks"].numpy()
    assert masks.shape == (2, H, W) and target["labels"].tolist() == [0, 1]  # the difficult dog is left out
    assert target["boxes"].tolist() == [[2, 2, 8, 10], [15, 8, 22, 14]]
    expected_cat = np.zeros((H, W), dtype=np.uint8)
    expected_cat[2:10, 2:8] = 1
    assert np.array_equal(masks[0], expected_cat)  # row 1 (void) excluded
    assert masks[1].sum() == 6 * 7 and masks[1][8:14, 15:22].all()
    kept = VOCDetection(str(root), ["2012"], "train", with_masks=True, keep_difficult=True)
    assert len(kept[0][1]["masks"]) == 3 and kept[0][1]["masks"][1].sum() == 5 * 5

    coco = ds.coco
    assert sorted(coco.imgs) == [1, 3]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["iscrowd"] for a in anns] == [0, 1, 0]  # difficult: ignored
    assert np.array_equal(coco.annToMask(anns[0]), expected_cat) and anns[0]["area"] == expected_cat.sum()
    assert VOCDetection(str(root), ["2012"], "train").coco.anns[1].get("segmentation") is None  # a box model


def test_palette_pngs_as_voc_writes_them(root: Path) -> None:
    with Image.open(root / "VOC2012" / "SegmentationObject" / "a.png") as png:
        assert png.mode == "P" and png.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
    palette = voc_palette()
    assert palette[3 * 255:3 * 256] == [224, 224, 192] and palette[3 * 15:3 * 16] == [192, 128, 128]


def test_no_segmentation_at_all_is_a_clear_error(root: Path) -> None:
    for png in (root / "VOC2012" / "SegmentationObject").iterdir():
        png.unlink()
    with pytest.raises(DatasetError, match=r"with_masks=True needs SegmentationObject/<id>.png files, and none of the "
                                           r"3 images has one"):
        VOCDetection(str(root), ["2012"], "train", with_masks=True)


@pytest.mark.parametrize("problem, message", [
    ("size", "SegmentationObject/a.png (image a) is 24x15 but its image is 24x16"),
    ("index", "SegmentationObject/a.png (image a) has object index 4, but its XML file lists 3 objects"),
    ("class", "SegmentationClass/a.png (image a) gives object 2 class index 1, but its XML <object> 2 has class "
              "index 2"),
    ("garbage", "Could not decode"),
    ("rgb", "has image mode 'RGB', expected a palette PNG"),
])
def test_bad_pngs_stop_the_build_or_are_skipped(root: Path, problem: str, message: str, caplog) -> None:
    year = root / "VOC2012"
    obj = read_index_png(year / "SegmentationObject" / "a.png", "a")
    cls = read_index_png(year / "SegmentationClass" / "a.png", "a")
    if problem == "size":
        _segmented(root, "a", obj[:-1], None)
    elif problem == "index":
        obj[0, 0] = 4
        _segmented(root, "a", obj, None)
    elif problem == "class":
        cls[cls == 2] = 1
        _segmented(root, "a", obj, cls)
    elif problem == "garbage":
        (year / "SegmentationObject" / "a.png").write_bytes(b"not a png")
    else:
        Image.new("RGB", (W, H)).save(year / "SegmentationObject" / "a.png")
    with pytest.raises(DatasetError) as info:
        VOCDetection(str(root), ["2012"], "train", with_masks=True)
    assert message in str(info.value) and "1 bad mask annotation in" in str(info.value)
    ds = VOCDetection(str(root), ["2012"], "train", with_masks=True, on_bad_image="skip")
    assert ds.ids == ["c"] and ds.box_report["dropped_bad_mask"] == 3  # the image's 3 objects
    assert "left out (dataset.on_bad_image=skip; 3 instances dropped)" in caplog.text
    assert VOCDetection(str(root), ["2012"], "train").ids == ["a", "b", "c"]  # a box model reads no PNG


def test_a_png_broken_after_the_build_is_a_bad_image_naming_the_image(root: Path) -> None:
    ds = VOCDetection(str(root), ["2012"], "train", with_masks=True)
    png = root / "VOC2012" / "SegmentationObject" / "c.png"
    png.write_bytes(b"broken")
    with pytest.raises(BadImageError, match=r"Could not decode .*c.png \(image c\)"):
        ds[1]
