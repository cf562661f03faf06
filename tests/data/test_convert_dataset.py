"""tools/convert_dataset.py and framework.data.convert: round trips between the YOLO, COCO and VOC layouts on the shapes
dataset (boxes within rounding, labels and classes exact), the VOC flags, polygons, and the output-folder rules."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from framework.data.convert import convert, default_splits, open_split
from framework.data.datasets.coco import CocoDetection
from framework.data.datasets.voc import VOCDetection
from framework.data.datasets.yolo import YOLODataset
from framework.data.errors import DatasetError

REPO = Path(__file__).resolve().parents[2]
BCCD = Path("/work/shared/data/bccd")


def tool(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("convert_dataset_cli", REPO / "tools" / "convert_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in argv])


def objects(ds) -> dict[str, list[tuple[int, list[float]]]]:
    """Per image file stem: its (label, box) pairs, sorted, from the dataset's COCO ground truth."""
    out = {}
    for i in range(len(ds)):
        info = ds.get_image_info(i)
        anns = ds.coco.imgToAnns.get(info["id"], [])
        pairs = [(ds.cat_id_to_label[a["category_id"]], [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                                         a["bbox"][1] + a["bbox"][3]]) for a in anns]
        out[Path(ds.image_path(i)).stem] = sorted(pairs, key=lambda p: (p[0], p[1]))
    return out


def assert_same_objects(a: dict, b: dict, atol: float) -> None:
    assert sorted(a) == sorted(b)
    for stem in a:
        assert [label for label, _ in a[stem]] == [label for label, _ in b[stem]], stem
        np.testing.assert_allclose([box for _, box in a[stem]], [box for _, box in b[stem]], atol=atol,
                                   err_msg=stem)


@pytest.fixture(scope="module")
def round_trip(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """shapes (COCO) → YOLO → VOC → COCO, through the tool."""
    base = tmp_path_factory.mktemp("convert")
    outs = {"yolo": base / "yolo", "voc": base / "voc", "coco": base / "coco"}
    assert tool(["--from", "coco", "--src", shapes_root, "--to", "yolo", "--out", outs["yolo"]]) == 0
    assert tool(["--from", "yolo", "--src", outs["yolo"] / "data.yaml", "--to", "voc", "--out", outs["voc"]]) == 0
    assert tool(["--from", "voc", "--src", outs["voc"], "--to", "coco", "--out", outs["coco"]]) == 0
    return outs


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_yolo_voc_coco_keeps_boxes_labels_and_classes(shapes_root: Path, round_trip: dict, split: str) -> None:
    source = CocoDetection(str(shapes_root), f"annotations/instances_{split}.json", f"images/{split}")
    yolo = YOLODataset(str(round_trip["yolo"] / "data.yaml"), split)
    voc = VOCDetection(str(round_trip["voc"]), image_set=split)
    back = CocoDetection(str(round_trip["coco"]), f"annotations/instances_{split}.json", f"images/{split}")
    for ds in (yolo, voc, back):
        assert ds.classes == source.classes
    want = objects(source)
    assert_same_objects(want, objects(yolo), atol=1e-3)  # six decimals of normalized coordinates
    # VOC names the val images apart from the train ones (both splits have 000001.jpg): compare by position.
    stems = {Path(back.get_image_info(i)["file_name"]).stem: Path(source.image_path(i)).stem for i in range(len(back))}
    got = {stems[k]: v for k, v in objects(back).items()}
    assert_same_objects(want, got, atol=1.0)  # VOC's whole pixels (the shapes boxes are whole pixels already)
    assert_same_objects(want, got, atol=1e-3)
    image, target = back[0]
    assert image.shape[-2:] == source[0][0].shape[-2:]
    assert back.image_path(0).is_symlink() and back.image_path(0).resolve() == source.image_path(0).resolve()


def test_tool_prints_the_command_that_trains_on_the_result(round_trip: dict, shapes_root: Path, tmp_path: Path,
                                                           capsys) -> None:
    assert tool(["--from", "coco", "--src", shapes_root, "--to", "yolo", "--out", tmp_path / "y"]) == 0
    printed = capsys.readouterr().out
    assert "train: 24 images" in printed
    assert f"dataset=yolo dataset.data={tmp_path / 'y' / 'data.yaml'}" in printed.splitlines()[-1]
    data = (round_trip["yolo"] / "data.yaml").read_text()
    assert "train: images/train" in data and "0: circle" in data and "path:" not in data.split("\n", 1)[1]


def test_voc_flags_year_and_split_renames(shapes_voc_root: Path, tmp_path: Path, capsys) -> None:
    assert tool(["--from", "voc", "--src", shapes_voc_root, "--years", "2007", "--splits", "trainval:train",
                 "test:val", "--to", "yolo", "--out", tmp_path / "y"]) == 0
    source, test = (VOCDetection(str(shapes_voc_root), image_set=s, keep_difficult=True) for s in ("trainval", "test"))
    difficult, in_test = (sum(int(d.get_annotation(i)["difficult"].sum()) for i in range(len(d))) for d in (source, test))
    assert difficult > 0 and f"{difficult + in_test} crowd or difficult objects left out" in capsys.readouterr().out
    yolo = YOLODataset(str(tmp_path / "y" / "data.yaml"), "train")
    assert len(yolo) == len(source)
    assert sum(len(yolo.get_annotation(i)["labels"]) for i in range(len(yolo))) == len(source._labels) - difficult
    kept = convert({"trainval": open_split("voc", shapes_voc_root, "trainval")}, "yolo", tmp_path / "y2")
    assert "dataset.train.split=trainval" in kept.use  # a split of any name reads back by that name
    assert len(YOLODataset(str(tmp_path / "y2" / "data.yaml"), "trainval")) == len(source)
    # To COCO the flag stays, as iscrowd; back to VOC it is <difficult> again.
    coco = convert({"trainval": open_split("voc", shapes_voc_root, "trainval")}, "coco", tmp_path / "c")
    assert coco.splits["trainval"]["objects"] == len(source._labels)
    again = convert({"trainval": open_split("coco", tmp_path / "c", "trainval")}, "voc", tmp_path / "v")
    assert again.use.startswith("python tools/train.py dataset=voc07")
    back = VOCDetection(str(tmp_path / "v"), image_set="trainval", keep_difficult=True)
    assert sum(int(back.get_annotation(i)["difficult"].sum()) for i in range(len(back))) == difficult


def test_polygons_carry_over_to_coco_and_yolo(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "src/images/train").mkdir(parents=True)
    (tmp_path / "src/labels/train").mkdir(parents=True)
    Image.new("RGB", (40, 20)).save(tmp_path / "src/images/train/a.png")
    (tmp_path / "src/labels/train/a.txt").write_text("1 0.5 0.1 0.75 0.1 0.625 0.6\n0 0.25 0.25 0.2 0.2\n")
    (tmp_path / "src/data.yaml").write_text("train: images/train\nnames: [cat, dog]\n")
    convert({"train": open_split("yolo", tmp_path / "src", "train")}, "coco", tmp_path / "c", copy_images=True)
    anns = json.loads((tmp_path / "c/annotations/instances_train.json").read_text())["annotations"]
    assert [len(a.get("segmentation", [])) for a in anns] == [1, 0]
    assert not (tmp_path / "c/images/train/a.png").is_symlink()
    convert({"train": open_split("coco", tmp_path / "c", "train")}, "yolo", tmp_path / "y", polygons=True)
    assert (tmp_path / "y/labels/train/a.txt").read_text().splitlines()[0].split()[0:3] == ["1", "0.500000",
                                                                                           "0.100000"]
    back = YOLODataset(str(tmp_path / "y/data.yaml"))
    np.testing.assert_allclose(back.polygons(0)[0], [[20, 2], [30, 2], [25, 12]], atol=1e-3)
    voc = convert({"train": open_split("yolo", tmp_path / "y", "train")}, "voc", tmp_path / "v")
    assert voc.notes == {"images re-encoded as JPEG (VOC's JPEGImages/<id>.jpg)": 1}
    assert VOCDetection(str(tmp_path / "v"), image_set="train")[0][0].shape == (3, 20, 40)


def test_output_folder_rules(shapes_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    (out / "keep.txt").parent.mkdir()
    (out / "keep.txt").write_text("mine")
    assert tool(["--from", "coco", "--src", shapes_root, "--splits", "val", "--to", "voc", "--out", out]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "keep.txt").is_file()
    assert tool(["--from", "coco", "--src", shapes_root, "--splits", "val", "--to", "voc", "--out", out,
                 "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["VOC2007"] and not list(tmp_path.glob(".out.*"))
    with pytest.raises(DatasetError, match="holds the source"):
        convert({"val": open_split("coco", shapes_root, "val")}, "yolo", shapes_root.parent, overwrite=True)
    assert default_splits("coco", shapes_root) == ["train", "val"]
    assert tool(["--from", "coco", "--src", shapes_root, "--splits", "tra", "--to", "yolo", "--out", tmp_path / "x"]) == 2
    assert "instances_tra.json" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.skipif(not BCCD.is_dir(), reason="BCCD is not at /work/shared/data/bccd")
def test_bccd_voc_to_yolo_keeps_every_box(tmp_path: Path) -> None:
    done = convert({s: open_split("voc", BCCD, s) for s in default_splits("voc", BCCD)}, "yolo", tmp_path / "bccd")
    assert list(done.splits) == ["train", "val", "test"]
    for split, counts in done.splits.items():
        source = VOCDetection(str(BCCD), image_set=split, keep_difficult=True)
        yolo = YOLODataset(str(tmp_path / "bccd" / "data.yaml"), split)
        n = sum(len(yolo.get_annotation(i)["labels"]) for i in range(len(yolo)))
        assert len(yolo) == len(source) == counts["images"] and n == len(source._labels) == counts["objects"]
        assert yolo.box_report["clipped"] == 0 and yolo.classes == source.classes
