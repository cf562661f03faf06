"""VOCDetection on hand-written VOC folders (the awkward cases real annotations have) and on the shapes VOC layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from pycocotools.coco import COCO
from torchvision import tv_tensors

from framework.config.cli import check_overrides
from framework.data.datasets.coco import CocoDetection, DatasetNotFoundError
from framework.data.datasets.shapes import SHAPES_CLASSES, generate_shapes
from framework.data.datasets.shapes_voc import DIFFICULT_SIDE, write_shapes_voc
from framework.data.datasets.voc import VOC_CLASSES, VOCDetection
from framework.data.errors import DatasetError

# A real-looking VOC2007 annotation: dog (truncated), person (difficult, no <truncated>), cat with a box starting at
# pixel 1 (the first column/row in VOC's 1-based convention) and ending at the last one.
XML_A = """<annotation>
\t<folder>VOC2007</folder>
\t<filename>000005.jpg</filename>
\t<source>
\t\t<database>The VOC2007 Database</database>
\t\t<annotation>PASCAL VOC2007</annotation>
\t</source>
\t<size>
\t\t<width>64</width>
\t\t<height>48</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>dog</name>
\t\t<pose>Left</pose>
\t\t<truncated>1</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>11</xmin>
\t\t\t<ymin>6</ymin>
\t\t\t<xmax>40</xmax>
\t\t\t<ymax>30</ymax>
\t\t</bndbox>
\t</object>
\t<object>
\t\t<name>person</name>
\t\t<pose>Frontal</pose>
\t\t<difficult>1</difficult>
\t\t<bndbox>
\t\t\t<xmin>50</xmin>
\t\t\t<ymin>20</ymin>
\t\t\t<xmax>60</xmax>
\t\t\t<ymax>45</ymax>
\t\t</bndbox>
\t</object>
\t<object>
\t\t<name>cat</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>1</xmin>
\t\t\t<ymin>1</ymin>
\t\t\t<xmax>64</xmax>
\t\t\t<ymax>48</ymax>
\t\t</bndbox>
\t</object>
</annotation>
"""


def _xml(objects: str, width: int = 32, height: int = 40) -> str:
    return (f"<annotation><filename>x.jpg</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")


def _obj(name: str, box: tuple[int, int, int, int], difficult: int = 0) -> str:
    x0, y0, x1, y1 = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


# 000007: only a difficult object (empty for training); 000009: portrait, grayscale JPEG.
XML_B = _xml(_obj("bird", (3, 4, 20, 30), difficult=1), 40, 30)
XML_C = _xml(_obj("bottle", (2, 2, 10, 35)) + _obj("bottle", (12, 2, 20, 35)), 32, 40)


def _write_year(root: Path, year: str, files: dict[str, tuple[str, Image.Image]], sets: dict[str, list[str]]) -> Path:
    d = root / f"VOC{year}"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for img_id, (xml, img) in files.items():
        (d / "Annotations" / f"{img_id}.xml").write_text(xml)
        img.save(d / "JPEGImages" / f"{img_id}.jpg", quality=95)
    for name, ids in sets.items():
        (d / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return d


@pytest.fixture()
def voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "VOCdevkit"
    files = {
        "000005": (XML_A, Image.new("RGB", (64, 48), (10, 200, 30))),
        "000007": (XML_B, Image.new("RGB", (40, 30), (0, 0, 255))),
        "000009": (XML_C, Image.new("L", (32, 40), 128)),
    }
    _write_year(root, "2007", files, {"trainval": ["000005", "000007", "000009"], "test": ["000009"]})
    return root


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.as_subclass(torch.Tensor)


# ------------------------------------------------------------------------------------------------ hand-written VOC


def test_sample_contract_and_pixel_convention(voc_root: Path) -> None:
    ds = VOCDetection(str(voc_root), ["2007"], "trainval")
    assert ds.classes == list(VOC_CLASSES) and ds.num_classes == 20
    assert ds.label_to_cat_id == list(range(1, 21))
    assert ds.ids == ["000005", "000007", "000009"] and len(ds) == 3

    image, target = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and tuple(image.shape) == (3, 48, 64)
    boxes = target["boxes"]
    assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format == tv_tensors.BoundingBoxFormat.XYXY
    assert tuple(boxes.canvas_size) == (48, 64) and boxes.dtype == torch.float32
    # 1-based inclusive → continuous: (xmin-1, ymin-1, xmax, ymax); the difficult person is left out.
    torch.testing.assert_close(_t(boxes), torch.tensor([[10.0, 5.0, 40.0, 30.0], [0.0, 0.0, 64.0, 48.0]]))
    assert target["labels"].dtype == torch.int64
    assert target["labels"].tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("cat")]
    assert "difficult" not in target and "truncated" not in target  # flags: get_annotation (crops drop boxes)
    ann = ds.get_annotation(0)
    assert ann["truncated"].dtype == bool and ann["truncated"].tolist() == [True, False, False]
    assert target["image_id"] == 1 and isinstance(target["image_id"], int)
    assert target["orig_size"] == (48, 64)

    gray, t3 = ds[2]  # grayscale JPEG still gives 3 channels
    assert tuple(gray.shape) == (3, 40, 32) and t3["image_id"] == 3 and len(t3["labels"]) == 2


def test_areas_match_the_legacy_devkit(voc_root: Path) -> None:
    """Our area (x1-x0)*(y1-y0) is the devkit's (xmax-xmin+1)*(ymax-ymin+1), so IoUs agree without any "+1"."""
    ann = VOCDetection(str(voc_root), ["2007"], "trainval").get_annotation(0)
    b = ann["boxes"]
    ours = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    legacy = [(40 - 11 + 1) * (30 - 6 + 1), (60 - 50 + 1) * (45 - 20 + 1), 64 * 48]
    assert ours.tolist() == legacy


def test_difficult_kept_in_annotation_and_on_request(voc_root: Path) -> None:
    ds = VOCDetection(str(voc_root), ["2007"], "trainval")
    ann = ds.get_annotation(0)
    assert ann["image_id"] == 1
    assert ann["boxes"].dtype == np.float32 and ann["boxes"].shape == (3, 4)
    np.testing.assert_array_equal(ann["boxes"][1], [49.0, 19.0, 60.0, 45.0])
    assert ann["labels"].dtype == np.int64 and ann["labels"][1] == VOC_CLASSES.index("person")
    assert ann["difficult"].dtype == bool and ann["difficult"].tolist() == [False, True, False]

    _, target = ds[1]  # only a difficult bird: empty for training
    assert tuple(target["boxes"].shape) == (0, 4) and tuple(target["labels"].shape) == (0,)
    assert target["labels"].dtype == torch.int64
    assert ds.get_annotation(1)["difficult"].tolist() == [True]

    keep = VOCDetection(str(voc_root), ["2007"], "trainval", keep_difficult=True)
    _, target = keep[0]
    assert len(target["labels"]) == 3
    assert keep.get_annotation(0)["truncated"].tolist() == [True, False, False]  # absent <truncated> reads as 0


def test_filter_empty_keeps_image_ids_stable(voc_root: Path) -> None:
    ds = VOCDetection(str(voc_root), ["2007"], "trainval", filter_empty=True)
    assert ds.ids == ["000005", "000009"]
    assert [ds[i][1]["image_id"] for i in range(2)] == [1, 3]
    assert [ds.get_annotation(i)["image_id"] for i in range(2)] == [1, 3]
    assert VOCDetection(str(voc_root), ["2007"], "trainval", filter_empty=True, keep_difficult=True).ids == [
        "000005", "000007", "000009"]


def test_image_info_from_xml_size(voc_root: Path) -> None:
    ds = VOCDetection(str(voc_root), ["2007"], "trainval")
    assert ds.get_image_info(0) == {"id": 1, "file_name": "VOC2007/JPEGImages/000005.jpg", "height": 48, "width": 64}
    assert ds.get_image_info(2)["height"] == 40 and ds.get_image_info(2)["width"] == 32


def test_missing_size_falls_back_to_image_header(tmp_path: Path) -> None:
    root = tmp_path / "VOCdevkit"
    xml = "<annotation><size><width>0</width><height>0</height></size>" + _obj("dog", (1, 1, 5, 5)) + "</annotation>"
    _write_year(root, "2007", {"a": (xml, Image.new("RGB", (30, 20)))}, {"test": ["a"]})
    info = VOCDetection(str(root), ["2007"], "test").get_image_info(0)
    assert (info["height"], info["width"]) == (20, 30)


def test_coco_view_for_the_coco_evaluator(voc_root: Path) -> None:
    ds = VOCDetection(str(voc_root), ["2007"], "trainval")
    coco = ds.coco
    assert isinstance(coco, COCO) and coco is ds.coco  # built once
    assert sorted(coco.getImgIds()) == [1, 2, 3] and coco.getCatIds() == list(range(1, 21))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["bbox"] for a in anns] == [[10.0, 5.0, 30.0, 25.0], [49.0, 19.0, 11.0, 26.0], [0.0, 0.0, 64.0, 48.0]]
    assert [a["iscrowd"] for a in anns] == [0, 1, 0]  # difficult → crowd (ignored by COCOeval)
    assert [a["category_id"] for a in anns] == [VOC_CLASSES.index(n) + 1 for n in ("dog", "person", "cat")]

    from framework.evaluation.coco import CocoEvaluator

    ev = CocoEvaluator(ds.coco, ds.label_to_cat_id, ds.classes)
    dets = []
    for i in range(len(ds)):
        ann = ds.get_annotation(i)
        n = len(ann["labels"])
        dets.append({"boxes": torch.from_numpy(ann["boxes"]), "scores": torch.ones(n),
                     "labels": torch.from_numpy(ann["labels"])})
    ev.process([ds.get_annotation(i)["image_id"] for i in range(len(ds))], dets)
    assert ev.evaluate()["bbox/mAP"] == pytest.approx(1.0)


def test_two_years_concatenate(voc_root: Path) -> None:
    _write_year(voc_root, "2012", {"2008_000001": (XML_C, Image.new("RGB", (32, 40)))}, {"trainval": ["2008_000001"]})
    ds = VOCDetection(str(voc_root), ["2007", "2012"], "trainval")
    assert ds.ids == ["000005", "000007", "000009", "2008_000001"]
    assert ds[3][1]["image_id"] == 4
    assert ds.get_image_info(3)["file_name"] == "VOC2012/JPEGImages/2008_000001.jpg"
    assert ds.years == ["2007", "2012"]
    assert VOCDetection(str(voc_root), "2012", "trainval").ids == ["2008_000001"]


def test_explicit_classes_and_classes_file(voc_root: Path) -> None:
    with pytest.raises(ValueError, match="000005.xml: object 1 has unknown class 'dog'"):
        VOCDetection(str(voc_root), ["2007"], "trainval", classes=["cat", "bottle"])
    ds = VOCDetection(str(voc_root), ["2007"], "test", classes=["cat", "bottle"])
    assert ds.num_classes == 2 and ds[0][1]["labels"].tolist() == [1, 1]
    (voc_root / "VOC2007" / "classes.txt").write_text("# my classes\nbottle\n\nbird\n")
    ds = VOCDetection(str(voc_root), ["2007"], "test")
    assert ds.classes == ["bottle", "bird"] and ds.label_to_cat_id == [1, 2]
    _write_year(voc_root, "2012", {}, {"test": []})
    with pytest.raises(ValueError, match="disagree on the class list"):
        VOCDetection(str(voc_root), ["2007", "2012"], "test")


# ------------------------------------------------------------------------------------------------ malformed XML


@pytest.mark.parametrize(
    "xml,expected",
    [
        (_xml(_obj("dog", (1, 1, 5, 5)) + _obj("dgo", (1, 1, 5, 5))),
         r"object 2 has unknown class 'dgo' \(did you mean 'dog'\?\)"),
        (_xml(_obj("zebra", (1, 1, 5, 5))), r"object 1 has unknown class 'zebra' \(known classes: aeroplane, "),
        (_xml(_obj("dog", (1, 1, 5, 5)) + "<object><name>cat</name></object>"), r"object 2 has no <bndbox>$"),
        (_xml("<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><ymax>4</ymax></bndbox></object>"),
         r"object 1 has no <bndbox>/<xmax>"),
        (_xml("<object><bndbox/></object>"), r"object 1 has no <name>"),
        (_xml("<object><name>cat</name><bndbox><xmin>1</xmin><ymin>a</ymin><xmax>4</xmax><ymax>4</ymax></bndbox>"
              "</object>"), r"object 1 has <bndbox>/<ymin>a</ymin>, expected a number"),
        (_xml(_obj("cat", (1, 1, 4, 5), difficult=2)), r"object 1 has <difficult>2</difficult>, expected 0 or 1"),
        ("<annotation>\n  <size><width>3</width></size>\n  <object><name>cat</name>\n</annotation>\n",
         r"Could not parse VOC annotation file .*000001\.xml: mismatched tag at line 4, column 2"),
        ("", r"Could not parse VOC annotation file .*000001\.xml: no element found at line 1, column 0"),
        ("<html></html>", r"000001\.xml: root element is <html>, expected <annotation>"),
    ],
    ids=["typo", "unknown", "no-bndbox", "no-xmax", "no-name", "nan", "flag", "mismatched", "empty", "root"],
)
def test_malformed_xml_names_file_and_element(tmp_path: Path, xml: str, expected: str) -> None:
    root = tmp_path / "VOCdevkit"
    _write_year(root, "2007", {"000001": (xml, Image.new("RGB", (8, 8)))}, {"test": ["000001"]})
    with pytest.raises(DatasetError, match=expected) as info:  # printed without a traceback by the tools
        VOCDetection(str(root), ["2007"], "test")
    assert str(root / "VOC2007" / "Annotations" / "000001.xml") in str(info.value)


def test_xml_cut_in_half_names_line_and_column(voc_root: Path) -> None:
    xml = voc_root / "VOC2007" / "Annotations" / "000005.xml"
    text = xml.read_text()
    xml.write_text(text[: len(text) // 2])
    with pytest.raises(DatasetError, match=r"Could not parse VOC annotation file .*000005\.xml: .* at line \d+, "
                                           r"column \d+") as info:
        VOCDetection(str(voc_root), ["2007"], "trainval")
    assert str(xml) in str(info.value)


def test_degenerate_boxes_are_dropped_or_clipped_and_counted(tmp_path: Path, caplog) -> None:
    """Inverted and NaN/inf boxes are dropped (training and evaluation); boxes reaching out of the image are cut for
    training only (the evaluation keeps them as written, as the devkit does), and everything is counted."""
    objects = (_obj("cat", (2, 2, 10, 10)) + _obj("cat", (9, 1, 4, 5)) + _obj("dog", (20, 30, 40, 50))
               + _obj("dog", (50, 50, 60, 60)) + _obj("cat", (3, 3, 8, 8)).replace("<xmin>3<", "<xmin>nan<")
               + _obj("cat", (3, 3, 8, 8)).replace("<ymax>8<", "<ymax>1e400<"))
    root = tmp_path / "VOCdevkit"
    _write_year(root, "2007", {"000001": (_xml(objects, 32, 40), Image.new("RGB", (32, 40)))}, {"test": ["000001"]})
    with caplog.at_level("WARNING", logger="framework"):
        ds = VOCDetection(str(root), ["2007"], "test")
    assert ds.box_report == {"clipped": 1, "dropped_empty": 1, "dropped_nonfinite": 2, "dropped_outside": 1}
    (message,) = [r.getMessage() for r in caplog.records if r.name == "framework"]
    assert "(test of VOC2007): 4 boxes dropped (1 zero or negative size, 2 NaN or infinite, 1 outside the image) and " \
           "1 box clipped to the image" in message
    assert "VOC2007/Annotations/000001.xml object 2 (zero or negative size)" in message
    assert "object 5 (NaN or infinite)" in message
    np.testing.assert_array_equal(ds.get_annotation(0)["boxes"], [[1, 1, 10, 10], [19, 29, 40, 50], [49, 49, 60, 60]])
    _, target = ds[0]
    np.testing.assert_array_equal(_t(target["boxes"]).numpy(), [[1, 1, 10, 10], [19, 29, 32, 40]])
    assert target["labels"].tolist() == [VOC_CLASSES.index("cat"), VOC_CLASSES.index("dog")]


# ------------------------------------------------------------------------------------------------ missing files


def test_missing_root_shows_tree_and_override(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetNotFoundError) as info:
        VOCDetection(str(missing), ["2007"], "trainval")
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert f"{missing} does not exist" in msg
    for line in (f"  {missing}/", "└── VOC2007/", "├── Annotations/", "├── ImageSets/",
                 "│   └── Main/", "trainval.txt", "└── JPEGImages/"):
        assert line in msg, line
    assert "dataset.root=/path/to/VOCdevkit" in msg


def test_missing_year_image_set_and_misplaced_root(voc_root: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"VOC2012 does not exist") as info:
        VOCDetection(str(voc_root), ["2007", "2012"], "trainval")
    assert "├── VOC2007/" in str(info.value) and "└── VOC2012/" in str(info.value)
    with pytest.raises(DatasetNotFoundError, match=r"val\.txt does not exist\. Image sets there: test, trainval"):
        VOCDetection(str(voc_root), ["2007"], "val")
    with pytest.raises(DatasetNotFoundError, match=rf"did you mean `dataset.root={voc_root}`"):
        VOCDetection(str(voc_root.parent), ["2007"], "trainval")  # the folder that holds VOCdevkit
    with pytest.raises(DatasetNotFoundError, match=rf"did you mean `dataset.root={voc_root}`"):
        VOCDetection(str(voc_root / "VOC2007"), ["2007"], "trainval")  # the year folder itself
    (voc_root / "VOC2007" / "Annotations" / "000007.xml").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"000007\.xml \(listed in .*trainval\.txt\) does not exist"):
        VOCDetection(str(voc_root), ["2007"], "trainval")


# ------------------------------------------------------------------------------------------------ shapes VOC layout

SMALL = dict(num_train=12, num_val=4, seed=0)


@pytest.fixture(scope="module")
def shapes_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes_voc(tmp_path_factory.mktemp("shapes_voc") / "voc", **SMALL)


@pytest.fixture(scope="module")
def shapes_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes_coco") / "shapes", **SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shapes_voc_layout_and_determinism(shapes_voc: Path, tmp_path: Path) -> None:
    year = shapes_voc / "VOC2007"
    assert sorted(p.name for p in year.iterdir()) == ["Annotations", "ImageSets", "JPEGImages", "SegmentationClass",
                                                      "SegmentationObject", "classes.txt"]
    assert (year / "classes.txt").read_text().split() == list(SHAPES_CLASSES)
    main = year / "ImageSets" / "Main"
    sets = {n: (main / f"{n}.txt").read_text().split() for n in ("train", "val", "trainval", "test")}
    assert sets["train"] == [f"{i:06d}" for i in range(1, 13)] and sets["val"] == [f"{i:06d}" for i in range(13, 17)]
    assert sets["trainval"] == sets["train"] + sets["val"] and sets["test"] == sets["val"]
    segmentation = year / "ImageSets" / "Segmentation"
    assert {n: (segmentation / f"{n}.txt").read_text().split() for n in sets} == sets  # every image is segmented
    again = write_shapes_voc(tmp_path / "again", **SMALL)
    assert _files(again) == _files(shapes_voc)
    # rewriting replaces our own year folder, leaves other years alone, and never touches a real VOC copy
    _write_year(again, "2012", {}, {"val": []})
    write_shapes_voc(again, **SMALL)
    assert (again / "VOC2012" / "ImageSets" / "Main" / "val.txt").is_file()
    with pytest.raises(FileExistsError, match="does not look like a shapes VOC folder"):
        write_shapes_voc(again, year="2012", **SMALL)
    assert [p.name for p in again.iterdir() if p.name.startswith(".")] == []


def test_shapes_voc_matches_coco_layout(shapes_voc: Path, shapes_coco: Path) -> None:
    num_train = SMALL["num_train"]
    for split, image_set, offset in (("train", "train", 0), ("val", "val", num_train)):
        voc = VOCDetection(str(shapes_voc), ["2007"], image_set, keep_difficult=True)
        coco = CocoDetection(str(shapes_coco), f"annotations/instances_{split}.json", f"images/{split}")
        assert voc.classes == coco.classes == list(SHAPES_CLASSES)
        assert len(voc) == len(coco)
        assert len(voc.coco.anns) == len(coco.coco.anns)  # same number of objects
        for i in range(len(voc)):
            assert voc.ids[i] == f"{coco.ids[i] + offset:06d}"
            ann = voc.get_annotation(i)
            _, ct = coco[i]
            np.testing.assert_array_equal(ann["boxes"], _t(ct["boxes"]).numpy())  # same pixels
            np.testing.assert_array_equal(ann["labels"], ct["labels"].numpy())
            # the very same JPEG bytes
            coco_file = shapes_coco / "images" / split / coco.get_image_info(i)["file_name"]
            assert (shapes_voc / voc.get_image_info(i)["file_name"]).read_bytes() == coco_file.read_bytes()
            info, cinfo = voc.get_image_info(i), coco.get_image_info(i)
            assert (info["height"], info["width"]) == (cinfo["height"], cinfo["width"])
            # the rules of the flags
            b = ann["boxes"]
            small = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) < DIFFICULT_SIDE
            np.testing.assert_array_equal(ann["difficult"], small)
            h, w = info["height"], info["width"]
            border = (b[:, 0] <= 0) | (b[:, 1] <= 0) | (b[:, 2] >= w) | (b[:, 3] >= h)
            np.testing.assert_array_equal(ann["truncated"], border)


def test_shapes_voc_exercises_difficult(shapes_voc: Path) -> None:
    ds = VOCDetection(str(shapes_voc), ["2007"], "trainval")
    difficult = np.concatenate([ds.get_annotation(i)["difficult"] for i in range(len(ds))])
    train_boxes = sum(len(ds[i][1]["labels"]) for i in range(len(ds)))
    assert 0 < difficult.sum() < len(difficult)
    assert train_boxes == len(difficult) - difficult.sum()


@pytest.mark.parametrize("preset", ["voc07", "voc12", "voc0712"])
def test_presets_compose_and_instantiate(preset: str, tmp_path: Path) -> None:
    root = tmp_path / "voc"
    for year in {"voc07": ["2007"], "voc12": ["2012"], "voc0712": ["2007", "2012"]}[preset]:
        write_shapes_voc(root, num_train=3, num_val=2, seed=0, year=year)
    cfg = check_overrides("train", [f"dataset={preset}", f"dataset.root={root}", "dataset.num_classes=4"])
    assert cfg.dataset.metric == ("voc12" if preset == "voc12" else "voc07")
    train, val = instantiate(cfg.dataset.train), instantiate(cfg.dataset.val)
    assert isinstance(train, VOCDetection) and isinstance(val, VOCDetection)
    assert train.num_classes == val.num_classes == cfg.dataset.num_classes == 4
    sizes = {"voc07": (5, 2), "voc12": (3, 2), "voc0712": (10, 2)}[preset]
    assert len(val) == sizes[1]
    assert len(train) <= sizes[0]  # filter_empty may drop images whose only objects are difficult
    image, target = val[0]
    assert image.dtype == torch.uint8 and target["boxes"].shape[-1] == 4
