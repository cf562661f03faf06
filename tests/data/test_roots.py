"""A missing dataset path: the message names it, the nearest existing folder and its close-named entries, and every
loader adds its layout hint (framework.data.datasets.roots)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from framework.data.datasets.cityscapes import CityscapesDetection
from framework.data.datasets.coco import CocoDetection, DatasetNotFoundError
from framework.data.datasets.roots import check_exists, missing_path_error, nearest_existing
from framework.data.datasets.shapes import ShapesDataset
from framework.data.datasets.voc import VOCDetection


def test_missing_path_error(tmp_path: Path) -> None:
    (tmp_path / "data" / "coco").mkdir(parents=True)
    missing = tmp_path / "data" / "cocoo" / "annotations"
    error = missing_path_error(missing, "Dataset root", "the layout")
    assert isinstance(error, FileNotFoundError)
    assert str(error) == (f"Dataset root {missing} does not exist.\nThe nearest existing folder is {tmp_path / 'data'}"
                          f"; did you mean {tmp_path / 'data' / 'coco'}?\nthe layout")
    assert f"{tmp_path / 'data'}, which holds: coco." in str(missing_path_error(tmp_path / "data" / "voc"))
    assert f"{tmp_path / 'data' / 'coco'} (empty)." in str(missing_path_error(tmp_path / "data" / "coco" / "x.json"))
    file = tmp_path / "data" / "list.txt"
    file.write_text("")
    assert str(missing_path_error(file, "Image folder")).startswith(f"Image folder {file} is a file, not a folder.")
    assert nearest_existing(tmp_path / "data" / ".." / "data" / "nope") == tmp_path / "data"
    assert check_exists(file) == file
    with pytest.raises(DatasetNotFoundError, match="Annotation file .*nope.json does not exist"):
        check_exists(tmp_path / "nope.json", "Annotation file")


@pytest.mark.parametrize("load, hint", [
    (lambda root: CocoDetection(root, "annotations/instances_train2017.json", "train2017"), "dataset.root=/path/to/coco"),
    (lambda root: VOCDetection(root, ["2007"], "trainval"), "└── VOC2007/"),
    (lambda root: CityscapesDetection(root, "train"), "gtFine/"),
    (lambda root: ShapesDataset(root, "train"), "tools/make_shapes.py --root"),
], ids=["coco", "voc", "cityscapes", "shapes"])
def test_every_loader_names_the_missing_root_and_the_nearest_folder(tmp_path: Path, load: Callable, hint: str) -> None:
    (tmp_path / "datasets" / "mydata").mkdir(parents=True)
    missing = tmp_path / "datasets" / "mydate"
    with pytest.raises(DatasetNotFoundError) as info:
        load(str(missing))
    msg = str(info.value)
    assert f"{missing} does not exist." in msg and hint in msg
    assert (f"The nearest existing folder is {tmp_path / 'datasets'}; did you mean "
            f"{tmp_path / 'datasets' / 'mydata'}?") in msg
    assert not missing.exists()
