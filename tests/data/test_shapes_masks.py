"""Exact instance masks of the shapes dataset in its three layouts: each mask is exactly the pixels the generator
painted for its shape (the visible ones where shapes overlap), each box is its mask's tight box, and the COCO,
VOC and Cityscapes loaders give the same masks, aligned with their boxes and labels; a box dataset reads none."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from framework.data.datasets import shapes
from framework.data.datasets.cityscapes import CITYSCAPES_CLASSES, CityscapesDetection
from framework.data.datasets.shapes import SHAPES_CLASSES, ShapesDataset, render_shapes, split_rng
from framework.data.datasets.shapes_cityscapes import GROUP_EVERY, SHAPE_TO_CITYSCAPES
from framework.data.datasets.voc import VOCDetection

# what tests/conftest.py's shapes fixtures hold (every layout: the same seed, sizes and pictures)
FIXTURE = dict(num_train=24, num_val=8, seed=0)


def _painted(split: str) -> list[shapes.Painted]:
    return list(render_shapes(FIXTURE[f"num_{split}"], split_rng(FIXTURE["seed"], split)))


@pytest.fixture(scope="module")
def painted() -> dict[str, list[shapes.Painted]]:
    return {split: _painted(split) for split in ("train", "val")}


def _tight_box(mask: torch.Tensor | np.ndarray) -> list[float]:
    ys, xs = np.nonzero(np.asarray(mask))
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_circle_outlines_fill_exactly_the_painted_disc() -> None:
    """PIL fills the row-trace outline of a circle into exactly its ellipse pixels, for every diameter drawn."""
    for d in range(shapes._MIN_OBJ, shapes._MAX_OBJ + 1):
        shape = {"kind": "circle", "ellipse": [3, 2, 3 + d - 1, 2 + d - 1]}
        painted = Image.new("L", (d + 6, d + 6), 0)
        shapes._draw_shape(ImageDraw.Draw(painted), shape, 1)
        filled = Image.new("L", (d + 6, d + 6), 0)
        ImageDraw.Draw(filled).polygon(shapes._outline(shape, d + 6, d + 6), fill=1)
        assert np.array_equal(np.asarray(filled), np.asarray(painted)), d


def test_generator_masks_are_the_painted_pixels() -> None:
    """On lossless pictures: the masks cover exactly the changed pixels, one colour each; RLE, box and area are the
    mask's; the outlines drawn in order give the instance map again (what json2instanceImg does)."""
    rng = np.random.default_rng(7)
    overlapped = 0
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(112, 161, size=2))
        bg = shapes._background(rng, h, w)
        img, anns, instances, outlines = shapes._paint_shapes(rng, bg, max_objects=5)
        pixels = np.asarray(img).astype(np.int64)
        changed = (pixels != bg).any(-1)
        assert np.array_equal(changed, instances > 0)
        redrawn = Image.new("I", (w, h), 0)
        for k, (ann, outline) in enumerate(zip(anns, outlines), start=1):
            ImageDraw.Draw(redrawn).polygon(outline, fill=k)
            mask = instances == k
            assert len(np.unique(pixels[mask], axis=0)) == 1  # the one colour of its shape
            assert np.array_equal(mask_utils.decode(ann["segmentation"]), mask)
            x, y, bw, bh = ann["bbox"]
            assert [x, y, x + bw, y + bh] == _tight_box(mask) and ann["area"] == mask.sum()
        assert np.array_equal(np.asarray(redrawn), instances)
        overlapped += sum(a["area"] < _full_area(o, h, w) for a, o in zip(anns, outlines))
    assert overlapped > 0  # some shapes were partly covered: their masks are their visible pixels


def _full_area(outline: list[tuple[float, float]], h: int, w: int) -> int:
    full = Image.new("L", (w, h), 0)
    ImageDraw.Draw(full).polygon(outline, fill=1)
    return int(np.count_nonzero(np.asarray(full)))


def test_coco_layout(shapes_root: Path, painted: dict[str, list[shapes.Painted]]) -> None:
    for split in ("train", "val"):
        ds = ShapesDataset(str(shapes_root), split, with_masks=True)
        assert len(ds) == len(painted[split])
        for i in range(len(ds)):
            image, target = ds[i]
            p = painted[split][i]
            expected = np.stack([p.instances == k for k in range(1, len(p.annotations) + 1)])
            assert target["masks"].dtype == torch.uint8 and target["masks"].shape[1:] == image.shape[1:]
            assert np.array_equal(target["masks"].numpy(), expected)
            assert target["boxes"].tolist() == [_tight_box(m) for m in expected]
            assert target["labels"].tolist() == [a["category_id"] - 1 for a in p.annotations]
        assert all("segmentation" in a for a in ds.coco.anns.values())


@pytest.mark.parametrize("year", ["2007", "2012"])
def test_voc_layout(shapes_voc_root: Path, painted: dict[str, list[shapes.Painted]], year: str) -> None:
    offset = {"train": 0, "val": FIXTURE["num_train"]}
    for split in ("train", "val"):
        ds = VOCDetection(str(shapes_voc_root), [year], split, with_masks=True, keep_difficult=True)
        assert len(ds) == len(painted[split])
        for i in range(len(ds)):
            assert ds.ids[i] == f"{offset[split] + i + 1:06d}"
            _, target = ds[i]
            p = painted[split][i]
            expected = np.stack([p.instances == k for k in range(1, len(p.annotations) + 1)])
            assert np.array_equal(target["masks"].numpy(), expected)
            assert target["boxes"].tolist() == [_tight_box(m) for m in expected]
            assert target["labels"].tolist() == [a["category_id"] - 1 for a in p.annotations]
    coco = ds.coco  # val: the masks at original size, as RLE
    for ann in coco.anns.values():
        mask = coco.annToMask(ann)
        x, y, w, h = ann["bbox"]
        assert _tight_box(mask) == [x, y, x + w, y + h] and ann["area"] == mask.sum()


def test_cityscapes_layout(shapes_cityscapes_root: Path, painted: dict[str, list[shapes.Painted]]) -> None:
    """Non-group instances: exactly the painted pixels, boxes the masks' extents; groups are crowd regions."""
    n = 0
    for split in ("train", "val"):
        ds = CityscapesDetection(str(shapes_cityscapes_root), split, with_masks=True)
        assert len(ds) == len(painted[split])
        for i in range(len(ds)):
            _, target = ds[i]
            p = painted[split][i]
            expected, labels = [], []
            for k, ann in enumerate(p.annotations, start=1):
                if n % GROUP_EVERY != GROUP_EVERY - 1:
                    expected.append(p.instances == k)
                    labels.append(CITYSCAPES_CLASSES.index(SHAPE_TO_CITYSCAPES[SHAPES_CLASSES[ann["category_id"] - 1]]))
                n += 1
            # the loader orders instances by pixel value (class, then k): compare as sets of (label, mask)
            got = sorted((int(lb), m.numpy().tobytes()) for lb, m in zip(target["labels"], target["masks"]))
            assert got == sorted((lb, m.astype(np.uint8).tobytes()) for lb, m in zip(labels, expected))
            assert target["boxes"].tolist() == [_tight_box(m) for m in target["masks"]]
    crowd = [a for a in ds.coco.anns.values() if a["iscrowd"]]
    assert crowd and all("segmentation" in a for a in ds.coco.anns.values())


def test_ground_truth_masks_score_segm_ap_1(shapes_voc_root: Path, shapes_cityscapes_root: Path,
                                            shapes_root: Path) -> None:
    """The `coco` index of every layout carries masks at original size: its own masks as detections score 1."""
    for ds in (ShapesDataset(str(shapes_root), "val", with_masks=True),
               VOCDetection(str(shapes_voc_root), ["2012"], "val", with_masks=True, keep_difficult=True),
               CityscapesDetection(str(shapes_cityscapes_root), "val", with_masks=True)):
        gt = ds.coco
        results = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
                    "segmentation": mask_utils.encode(np.asfortranarray(gt.annToMask(a)))}
                   for a in gt.anns.values() if not a["iscrowd"]]
        ev = COCOeval(gt, gt.loadRes(results), "segm")
        ev.params.imgIds = sorted(gt.getImgIds())
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0), type(ds).__name__


def test_a_box_dataset_reads_no_masks(shapes_voc_root: Path, shapes_cityscapes_root: Path, shapes_root: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import framework.data.datasets.cityscapes as cityscapes
    import framework.data.datasets.voc as voc

    boxes_only = [ShapesDataset(str(shapes_root), "val"), VOCDetection(str(shapes_voc_root), ["2012"], "val"),
                  CityscapesDetection(str(shapes_cityscapes_root), "val")]

    def no(*args, **kwargs):
        raise AssertionError("a box dataset read a mask file")

    monkeypatch.setattr(voc, "read_index_png", no)
    monkeypatch.setattr(voc, "check_segmentation_pngs", no)
    monkeypatch.setattr(cityscapes, "_read_instance_ids", no)
    for ds in boxes_only:
        image, target = ds[0]
        assert "masks" not in target and len(target["boxes"]) > 0
        assert not any("segmentation" in a for a in ds.coco.anns.values()) or isinstance(ds, ShapesDataset)
    assert boxes_only[0]._tables.segm is None  # COCO: not even the packed text is kept


def test_a_shapes_folder_from_before_exact_masks_warns(shapes_root: Path, tmp_path: Path, caplog) -> None:
    """Its segmentations are polygons (within ~2 px): it still loads, and says how to get exact masks."""
    root = tmp_path / "old_shapes"
    shutil.copytree(shapes_root, root)
    ann_file = root / "annotations" / "instances_val.json"
    data = json.loads(ann_file.read_text())
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    ann_file.write_text(json.dumps(data))
    ds = ShapesDataset(str(root), "val", with_masks=True)
    assert "written by an older generator" in caplog.text and "make_shapes.py --root" in caplog.text
    assert len(ds[0][1]["masks"]) == len(ds[0][1]["boxes"])
    caplog.clear()
    ShapesDataset(str(shapes_root), "val", with_masks=True)
    assert "older generator" not in caplog.text
