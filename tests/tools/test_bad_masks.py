"""Bad mask annotations as a user meets them through tools/train.py with masks: each stops the run before training
with a DatasetError naming the file and the annotation (or image) id, no traceback; under
dataset.on_bad_image=skip they are dropped, counted, and training goes on. Three runs in all (~10 s each)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from .test_bad_annotations import QUICK, _small_coco_copy, _train_fails
from .test_train_and_test import run

MASKS = ["+dataset.train.with_masks=true", "+dataset.val.with_masks=true"]


def _bad_coco(shapes_root: Path, dst: Path) -> tuple[Path, list[dict]]:
    """8 train / 4 val images; train annotations 0-3 made bad, one way each (the 4 cases of issue 21 point 8)."""
    root = _small_coco_copy(shapes_root, dst, {"train": 8, "val": 4})
    ann_file = root / "annotations" / "instances_train.json"
    data = json.loads(ann_file.read_text())
    anns = data["annotations"]
    anns[0]["segmentation"] = [[10.0, 10.0, 20.0, 10.0]]  # 2 points
    anns[1]["segmentation"] = [[10.0, 10.0, 20.0, 10.0, 20.0]]  # an odd number of coordinates
    h, w = anns[2]["segmentation"]["size"]
    anns[2]["segmentation"]["size"] = [h + 1, w]  # the RLE of another picture
    anns[3]["image_id"] = 999  # a mask annotation of an image that is not in 'images'
    ann_file.write_text(json.dumps(data))
    return root, anns


def test_bad_coco_masks_stop_before_training_naming_file_and_annotation(repo_root: Path, shapes_root: Path,
                                                                        tmp_path: Path) -> None:
    root, anns = _bad_coco(shapes_root, tmp_path / "shapes")
    proc = _train_fails(repo_root, tmp_path, f"dataset.root={root}", *MASKS)
    err = proc.stderr
    ann_file = root / "annotations" / "instances_train.json"
    assert f"4 bad mask annotations in {ann_file}:" in err, err[-3000:]
    assert f"annotation {anns[0]['id']} (annotations[0]): segmentation polygon 0 has 2 point(s)" in err
    assert f"annotation {anns[1]['id']} (annotations[1]): segmentation polygon 0 has an odd number" in err
    assert f"annotation {anns[2]['id']} of image {anns[2]['image_id']}: its RLE is" in err
    assert f"annotation {anns[3]['id']} is for image 999, which is not in 'images'" in err
    assert "dataset.on_bad_image=skip" in err


def test_bad_coco_masks_are_dropped_and_counted_under_skip(repo_root: Path, shapes_root: Path,
                                                           tmp_path: Path) -> None:
    root, _ = _bad_coco(shapes_root, tmp_path / "shapes")
    proc = run(repo_root, "tools/train.py", *QUICK, f"dataset.root={root}", *MASKS, "dataset.on_bad_image=skip",
               f"hydra.run.dir={tmp_path / 'run'}")
    out = proc.stdout + proc.stderr
    assert "4 bad mask annotations left out (dataset.on_bad_image=skip; 3 instances dropped)" in out, out[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.pth").is_file()


def test_cityscapes_instance_png_of_another_size(repo_root: Path, shapes_cityscapes_root: Path,
                                                 tmp_path: Path) -> None:
    root = tmp_path / "cityscapes"
    shutil.copytree(shapes_cityscapes_root, root)
    png = sorted(root.glob("gtFine/val/*/*_gtFine_instanceIds.png"))[1]
    with Image.open(png) as img:
        ids = np.asarray(img)
    Image.fromarray(np.ascontiguousarray(ids[:-3])).save(png)
    proc = _train_fails(repo_root, tmp_path, "dataset=cityscapes", f"dataset.root={root}", *MASKS)
    assert f"{png} is {ids.shape[1]}x{ids.shape[0] - 3} but its image" in proc.stderr, proc.stderr[-3000:]
    assert "(image_id 2)" in proc.stderr
