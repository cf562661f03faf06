"""Bad annotation files as a user meets them: degenerate boxes are dropped and counted and training goes on; a file
cut short stops tools/train.py before training with the file, line and column, and no traceback."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_train_and_test import FAST, run

QUICK = [*FAST, "trainer.max_epochs=1", "evaluation.plots=false", "trainer.vis_images=0"]


def _small_coco_copy(src: Path, dst: Path, num: dict[str, int]) -> Path:
    """The first `num[split]` images of each split of a shapes (COCO layout) folder, with their annotations."""
    for split, n in num.items():
        data = json.loads((src / "annotations" / f"instances_{split}.json").read_text())
        data["images"] = sorted(data["images"], key=lambda im: im["id"])[:n]
        kept = {im["id"] for im in data["images"]}
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
        (dst / "images" / split).mkdir(parents=True)
        for im in data["images"]:
            shutil.copy(src / "images" / split / im["file_name"], dst / "images" / split / im["file_name"])
        (dst / "annotations").mkdir(exist_ok=True)
        (dst / "annotations" / f"instances_{split}.json").write_text(json.dumps(data, indent=1))
    return dst


def _train_fails(repo_root: Path, tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "tools/train.py", *QUICK, *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
    return proc


def test_degenerate_boxes_are_dropped_counted_and_training_goes_on(repo_root: Path, shapes_root: Path,
                                                                   tmp_path: Path) -> None:
    root = _small_coco_copy(shapes_root, tmp_path / "shapes", {"train": 8, "val": 4})
    ann_file = root / "annotations" / "instances_train.json"
    data = json.loads(ann_file.read_text())
    anns = data["annotations"]
    anns[0]["bbox"][2] = -anns[0]["bbox"][2]  # negative width
    anns[1]["bbox"][3] = 0.0  # zero height
    anns[2]["bbox"][0] = float("nan")  # written as NaN: not strict JSON, but what json.dump writes and reads
    anns[3]["bbox"][0] = -5.0  # reaches out of the image: clipped, kept
    ann_file.write_text(json.dumps(data))
    assert "NaN" in ann_file.read_text()

    proc = run(repo_root, "tools/train.py", *QUICK, f"dataset.root={root}", f"hydra.run.dir={tmp_path / 'run'}")
    out = proc.stdout + proc.stderr
    assert (f"{ann_file}: 3 boxes dropped (2 zero or negative size, 1 NaN or infinite) and 1 box clipped to the "
            "image") in out, out[-3000:]
    assert f"image {anns[2]['image_id']} annotation {anns[2]['id']} (NaN or infinite)" in out
    assert "dropped boxes are left out of training" in out
    assert (tmp_path / "run" / "checkpoints" / "last.pth").is_file()


def test_voc_xml_cut_in_half_names_file_line_and_column(repo_root: Path, shapes_voc_root: Path,
                                                        tmp_path: Path) -> None:
    root = tmp_path / "VOCdevkit"
    shutil.copytree(shapes_voc_root / "VOC2007", root / "VOC2007")
    first = (root / "VOC2007" / "ImageSets" / "Main" / "trainval.txt").read_text().split()[3]
    xml = root / "VOC2007" / "Annotations" / f"{first}.xml"
    text = xml.read_text()
    xml.write_text(text[: len(text) // 2])

    proc = _train_fails(repo_root, tmp_path, "dataset=voc07", f"dataset.root={root}", "dataset.num_classes=4")
    assert f"Could not parse VOC annotation file {xml}: " in proc.stderr, proc.stderr[-2000:]
    line = next(ln for ln in proc.stderr.splitlines() if str(xml) in ln)
    assert " at line " in line and ", column " in line


def test_coco_json_cut_in_half_names_file_line_and_column(repo_root: Path, shapes_root: Path,
                                                          tmp_path: Path) -> None:
    root = _small_coco_copy(shapes_root, tmp_path / "shapes", {"train": 4, "val": 2})
    ann_file = root / "annotations" / "instances_train.json"
    cut = ann_file.read_text()[: len(ann_file.read_text()) // 2]
    ann_file.write_text(cut)
    with pytest.raises(json.JSONDecodeError) as where:
        json.loads(cut)

    proc = _train_fails(repo_root, tmp_path, f"dataset.root={root}")
    assert f"Could not parse COCO annotation file {ann_file}: " in proc.stderr, proc.stderr[-2000:]
    assert f"at line {where.value.lineno}, column {where.value.colno}" in proc.stderr
