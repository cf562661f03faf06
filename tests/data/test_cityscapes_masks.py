"""CityscapesDetection(with_masks=True) on hand-built instance-id PNGs: masks cut from gtFine_instanceIds.png per
sample, aligned with the boxes; `coco` with RLE for instances and group regions; an instance PNG whose size is not
its image's named with the image id (or the image left out under on_bad_image=skip)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framework.data.datasets.cityscapes import CityscapesDetection
from framework.data.errors import BadImageError, DatasetError

from .test_cityscapes_dataset import _hand_built

AACHEN = "gtFine/val/aachen/aachen_000000_000019_gtFine_instanceIds.png"
BREMEN = "gtFine/val/bremen/bremen_000000_000001_gtFine_instanceIds.png"


@pytest.fixture()
def hand_root(tmp_path: Path) -> Path:
    return _hand_built(tmp_path / "cityscapes")


def _ids(root: Path, name: str) -> np.ndarray:
    with Image.open(root / name) as png:
        return np.asarray(png, dtype=np.int64)


def test_masks_are_the_instance_pixels_aligned_with_the_boxes(hand_root: Path) -> None:
    ds = CityscapesDetection(str(hand_root), "val", with_masks=True)
    ids = _ids(hand_root, AACHEN)
    image, target = ds[0]
    masks = target["masks"].numpy()
    assert masks.dtype == np.uint8 and masks.shape == (3, 40, 64)
    for mask, value in zip(masks, (24000, 24001, 26000)):  # instances in pixel-value order, as the boxes
        assert np.array_equal(mask, ids == value)
    for mask, box in zip(masks, target["boxes"].tolist()):
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box
    assert ds[1][1]["masks"].shape == (0, 30, 20)  # bremen: a group only

    coco = ds.coco
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["iscrowd"] for a in anns] == [0, 0, 0, 1]
    assert np.array_equal(coco.annToMask(anns[1]), ids == 24001)
    assert np.array_equal(coco.annToMask(anns[3]), ids == 26) and anns[3]["area"] == 152  # the car group
    assert all("segmentation" not in a for a in CityscapesDetection(str(hand_root), "val").coco.anns.values())


def test_an_instance_png_of_another_size_names_both_files_and_the_image(hand_root: Path, caplog) -> None:
    Image.fromarray(np.full((30, 21), 7, dtype=np.uint16)).save(hand_root / BREMEN)
    left = hand_root / "leftImg8bit/val/bremen/bremen_000000_000001_leftImg8bit.png"
    with pytest.raises(DatasetError) as info:
        CityscapesDetection(str(hand_root), "val", with_masks=True)
    assert f"{hand_root / BREMEN} is 21x30 but its image {left} (image_id 2) is 20x30" in str(info.value)
    ds = CityscapesDetection(str(hand_root), "val", with_masks=True, on_bad_image="skip")
    assert ds.ids == [1] and ds.box_report["dropped_bad_mask"] == 0  # it held no instance (a group only)
    assert "1 bad mask annotation left out" in caplog.text
    assert sorted(ds.coco.imgs) == [1]


def test_a_png_changed_after_the_build_is_a_bad_image_naming_the_image(hand_root: Path) -> None:
    ds = CityscapesDetection(str(hand_root), "val", with_masks=True)
    (hand_root / AACHEN).write_bytes(b"broken")
    with pytest.raises(BadImageError, match=r"Could not decode instance-id PNG .* \(image_id 1\)"):
        ds[0]
