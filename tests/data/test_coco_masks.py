"""Instance masks from a COCO file (`CocoDetection(with_masks=True)`): polygons, compressed RLE and crowd regions in
uncompressed RLE, decoded per sample and aligned with the boxes; a box model gets none and keeps no segmentation;
bad segmentations stop the build naming the file and the annotation id."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from framework.data.datasets.coco import CocoDetection
from framework.data.datasets.shapes import ShapesDataset
from framework.data.errors import DatasetError

H, W = 8, 10


def square(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def write_set(root: Path, annotations: list[dict], n_images: int = 2) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(1, n_images + 1):
        Image.fromarray(np.full((H, W, 3), 40 * i, dtype=np.uint8)).save(root / "images" / f"{i}.png")
    data = {"images": [{"id": i, "file_name": f"{i}.png", "height": H, "width": W} for i in range(1, n_images + 1)],
            "categories": [{"id": 1, "name": "thing"}], "annotations": annotations}
    (root / "ann.json").write_text(json.dumps(data))
    return root


def ann(aid: int, image_id: int, bbox: list[float], segmentation, iscrowd: int = 0) -> dict:
    return {"id": aid, "image_id": image_id, "category_id": 1, "bbox": bbox, "iscrowd": iscrowd,
            "area": bbox[2] * bbox[3], "segmentation": segmentation}


def compressed(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def uncompressed(m: np.ndarray) -> dict:
    """Run lengths in column-major order, starting with zeros, as COCO writes crowd regions."""
    flat, runs, value, count = m.flatten(order="F"), [], 0, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    return {"size": [H, W], "counts": runs + [count]}


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    polygon = [[2.0, 1.0, 6.0, 1.0, 6.0, 5.0, 2.0, 5.0]]  # x, y: the square x 2..6, y 1..5
    return write_set(tmp_path, [
        ann(7, 1, [2, 1, 4, 4], polygon),
        ann(8, 1, [0, 0, 10, 8], uncompressed(square(0, 8, 0, 10)), iscrowd=1),  # a crowd region: no target
        ann(9, 2, [5, 3, 3, 4], compressed(square(3, 7, 5, 8))),
    ])


def test_polygons_and_rle_decode_aligned_with_boxes_and_crowd_left_out(mixed: Path) -> None:
    ds = CocoDetection(str(mixed), "ann.json", "images", with_masks=True)
    _, first = ds[0]
    assert first["masks"].dtype == torch.uint8 and tuple(first["masks"].shape) == (1, H, W)
    # pycocotools draws the polygon's area: the pixels x 2..5, y 1..4 (x in [2, 6), y in [1, 5))
    assert torch.equal(first["masks"][0], torch.from_numpy(square(1, 5, 2, 6)))
    assert first["boxes"].tolist() == [[2.0, 1.0, 6.0, 5.0]] and first["labels"].tolist() == [0]
    _, second = ds[1]
    assert torch.equal(second["masks"][0], torch.from_numpy(square(3, 7, 5, 8)))
    # the crowd region is kept for the evaluator (pycocotools reads the file), never as a target
    assert len(ds.coco.getAnnIds(imgIds=[1], iscrowd=True)) == 1
    again = pickle.loads(pickle.dumps(ds))  # what a loader worker gets: the packed segmentations travel along
    assert torch.equal(again[1][1]["masks"], second["masks"])


def test_a_box_model_gets_no_masks_and_keeps_no_segmentation(mixed: Path) -> None:
    ds = CocoDetection(str(mixed), "ann.json", "images")
    assert "masks" not in ds[0][1] and ds._tables.segm is None


def test_filter_empty_keeps_masks_with_their_images(mixed: Path) -> None:
    root = write_set(mixed, json.loads((mixed / "ann.json").read_text())["annotations"], n_images=3)  # image 3: none
    ds = CocoDetection(str(root), "ann.json", "images", with_masks=True, filter_empty=True)
    assert len(ds) == 2 and torch.equal(ds[1][1]["masks"][0], torch.from_numpy(square(3, 7, 5, 8)))


def test_shapes_masks_match_their_boxes(shapes_root: Path) -> None:
    """The shapes generator writes each shape's painted pixels as RLE, and their tight box as the box: equal."""
    ds = ShapesDataset(str(shapes_root), "train", with_masks=True)
    for i in range(4):
        image, target = ds[i]
        masks, boxes = target["masks"], target["boxes"]
        assert masks.shape[0] == len(boxes) > 0 and masks.shape[1:] == image.shape[1:]
        for m, b in zip(masks, boxes):
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float().tolist() == b.tolist()


@pytest.mark.parametrize("segmentation, message", [
    ([[1.0, 1.0, 5.0, 1.0]], "polygon 0 has 2 point(s); a polygon needs at least 3"),
    ([[1.0, 1.0, 5.0, 1.0, 5.0]], "polygon 0 has an odd number of coordinates (5)"),
    ({"size": [H + 1, W], "counts": "abc"}, f"its RLE is {H + 1}x{W} (height x width) but the image is {H}x{W}"),
    ("not a mask", "'segmentation' must be a list of polygons or an RLE"),
])
def test_bad_segmentations_name_the_file_and_annotation(tmp_path: Path, segmentation, message: str) -> None:
    root = write_set(tmp_path, [ann(42, 1, [1, 1, 4, 4], segmentation)])
    with pytest.raises(DatasetError) as info:
        CocoDetection(str(root), "ann.json", "images", with_masks=True)
    assert str(root / "ann.json") in str(info.value) and "annotation 42" in str(info.value)
    assert message in str(info.value)
    CocoDetection(str(root), "ann.json", "images")  # a box model does not read them


def test_a_mask_model_needs_a_segmentation(tmp_path: Path) -> None:
    root = write_set(tmp_path, [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3]}])
    with pytest.raises(DatasetError, match=r"annotation 5 .* has no 'segmentation', which a mask model needs"):
        CocoDetection(str(root), "ann.json", "images", with_masks=True)


def test_a_mask_annotation_of_a_missing_image_is_an_error(tmp_path: Path) -> None:
    polygon = [[2.0, 1.0, 6.0, 1.0, 6.0, 5.0, 2.0, 5.0]]
    root = write_set(tmp_path, [ann(3, 1, [2, 1, 4, 4], polygon), ann(4, 9, [2, 1, 4, 4], polygon)])
    with pytest.raises(DatasetError, match=r"ann.json: annotation 4 is for image 9, which is not in 'images'"):
        CocoDetection(str(root), "ann.json", "images", with_masks=True)
    assert CocoDetection(str(root), "ann.json", "images").box_report["dropped_no_image"] == 1  # boxes: ignored


def test_skip_drops_bad_masks_counts_them_and_keeps_them_out_of_evaluation(tmp_path: Path, caplog) -> None:
    polygon = [[2.0, 1.0, 6.0, 1.0, 6.0, 5.0, 2.0, 5.0]]
    root = write_set(tmp_path, [
        ann(1, 1, [2, 1, 4, 4], polygon),
        ann(2, 1, [1, 1, 4, 4], [[1.0, 1.0, 5.0, 1.0]]),  # 2 points
        ann(3, 2, [1, 1, 4, 4], {"size": [H, W + 1], "counts": "abc"}),  # the RLE of another picture
        ann(4, 7, [1, 1, 4, 4], polygon),  # image 7 does not exist
    ])
    with pytest.raises(DatasetError) as info:
        CocoDetection(str(root), "ann.json", "images", with_masks=True)
    message = str(info.value)
    assert message.startswith(f"3 bad mask annotations in {root / 'ann.json'}:")
    assert all(f"annotation {i}" in message for i in (2, 3, 4)) and "dataset.on_bad_image=skip" in message

    ds = CocoDetection(str(root), "ann.json", "images", with_masks=True, on_bad_image="skip")
    assert ds.box_report["dropped_bad_mask"] == 2 and ds.box_report["dropped_no_image"] == 1
    assert "3 bad mask annotations left out (dataset.on_bad_image=skip; 2 instances dropped)" in caplog.text
    assert len(ds[0][1]["masks"]) == 1 and len(ds[1][1]["masks"]) == 0  # training goes on without them
    assert sorted(ds.coco.anns) == [1, 4]  # 4 belongs to no image: pycocotools' evaluation ignores it


def test_an_rle_on_a_picture_of_another_size_is_a_bad_image_naming_the_annotation(tmp_path: Path) -> None:
    """Found only when decoding (the file is not the size 'images' gives, and no scan ran): a BadImageError, which
    dataset.on_bad_image handles like any unreadable image."""
    from framework.data.errors import BadImageError

    root = write_set(tmp_path, [ann(11, 1, [5, 3, 3, 4], compressed(square(3, 7, 5, 8)))], n_images=1)
    Image.fromarray(np.zeros((H + 2, W, 3), dtype=np.uint8)).save(root / "images" / "1.png")
    ds = CocoDetection(str(root), "ann.json", "images", with_masks=True)
    with pytest.raises(BadImageError, match=r"annotation 11 of image 1: its RLE is 8x10 but the decoded image is 10x10"):
        ds[0]
