"""YOLODataset(with_masks=True) on ultralytics-seg polygon rows: masks drawn per sample, aligned with the boxes; a box
row stops a mask model's build naming the file and line, or is dropped and counted under on_bad_image=skip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from framework.data.datasets.yolo import YOLODataset
from framework.data.errors import DatasetError

from .test_yolo_dataset import W, H, write, write_image


@pytest.fixture
def seg_root(tmp_path: Path) -> Path:
    """One image: a rectangle polygon (x 4..12, y 2..10) and a triangle, as ultralytics-seg labels."""
    root = tmp_path / "seg"
    write_image(root / "images/train/a.jpg")
    write(root / "labels/train/a.txt", f"0 {4 / W} {2 / H} {12 / W} {2 / H} {12 / W} {10 / H} {4 / W} {10 / H}\n"
                                       "1 0.5 0.1 0.75 0.1 0.625 0.6\n")
    write(root / "data.yaml", "path: .\ntrain: images/train\nnames: [cat, dog]\n")
    return root


def test_polygon_rows_become_masks_aligned_with_their_boxes(seg_root: Path) -> None:
    ds = YOLODataset(str(seg_root / "data.yaml"), "train", with_masks=True)
    _, target = ds[0]
    masks = target["masks"].numpy()
    assert masks.shape == (2, H, W) and target["labels"].tolist() == [0, 1]
    rectangle = np.zeros((H, W), dtype=np.uint8)
    rectangle[2:10, 4:12] = 1  # pycocotools: the pixels inside the polygon's area
    assert np.array_equal(masks[0], rectangle)
    for mask, box in zip(masks, target["boxes"].tolist()):
        ys, xs = np.nonzero(mask)
        assert np.allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1)
    assert "masks" not in YOLODataset(str(seg_root / "data.yaml"), "train")[0][1]


def test_a_box_row_needs_a_polygon(seg_root: Path) -> None:
    labels = seg_root / "labels/train/a.txt"
    labels.write_text(labels.read_text() + "0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetError, match=rf"{labels}, line 3: a box row \(class cx cy w h\) has no polygon"):
        YOLODataset(str(seg_root / "data.yaml"), "train", with_masks=True)
    ds = YOLODataset(str(seg_root / "data.yaml"), "train", with_masks=True, on_bad_image="skip")
    assert ds.box_report["dropped_bad_mask"] == 1 and len(ds[0][1]["masks"]) == 2
