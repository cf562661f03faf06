"""CityscapesDetection on hand-built instance-id PNGs and on the shapes dataset in Cityscapes layout."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from framework.data.errors import BadImageError
from framework.data.datasets.cityscapes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_INSTANCE_LABELS,
    CityscapesDetection,
)
from framework.data.datasets.coco import DatasetNotFoundError
from framework.data.datasets.shapes import SHAPES_CLASSES, render_shapes, split_rng
from framework.data.datasets.shapes_cityscapes import (
    CITIES,
    GROUP_EVERY,
    MARKER,
    SHAPE_TO_CITYSCAPES,
    write_shapes_cityscapes,
)
from framework.evaluation.coco import CocoEvaluator

SMALL = dict(num_train=8, num_val=6, seed=3)
ID = {lb.name: lb.id for lb in CITYSCAPES_INSTANCE_LABELS}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _write_frame(root: Path, split: str, city: str, frame: str, ids: np.ndarray) -> tuple[Path, Path]:
    """One image and its 16-bit instance-id PNG (the image is flat grey: only its size matters here)."""
    stem = f"{city}_000000_{frame}"
    img_dir, ann_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    h, w = ids.shape
    left = img_dir / f"{stem}_leftImg8bit.png"
    Image.new("RGB", (w, h), (90, 90, 90)).save(left)
    inst = ann_dir / f"{stem}_gtFine_instanceIds.png"
    Image.fromarray(ids.astype(np.uint16)).save(inst)
    return left, inst


def _hand_built(root: Path) -> Path:
    """Two cities, sorted: aachen (instances, a car group, caravan, stuff) and bremen (stuff and a person group)."""
    a = np.full((40, 64), 7, dtype=np.int64)  # road
    a[:10] = 11  # building
    a[12:20, 3:9] = 24000  # person 0: box [3, 12, 9, 20]
    a[20:30, 30:34] = 24001  # person 1, L-shaped: box [30, 20, 41, 30]
    a[28:30, 34:41] = 24001
    a[5:15, 50:62] = 26000  # car 0, partly over the building: box [50, 5, 62, 15]
    a[30:38, 2:21] = 26  # a car group: crowd box [2, 30, 21, 38], 152 pixels
    a[33:36, 45:60] = 29000  # caravan: has instances but is ignored in evaluation, like stuff
    a[0, 63] = 26000  # one stray pixel of car 0 widens its box to the image's top-right corner
    _write_frame(root, "val", "aachen", "000019", a)
    b = np.full((30, 20), 7, dtype=np.int64)
    b[2:6, 4:10] = 24  # a person group only: no training box
    _write_frame(root, "val", "bremen", "000001", b)
    return root


@pytest.fixture()
def hand_root(tmp_path: Path) -> Path:
    return _hand_built(tmp_path / "cityscapes")


@pytest.fixture(scope="module")
def shapes_cs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes_cityscapes(tmp_path_factory.mktemp("cs") / "shapes_cityscapes", **SMALL)


# --------------------------------------------------------------------------- label table


def test_label_table_matches_cityscapesscripts() -> None:
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    official = {lb.id: lb for lb in labels.labels}
    for ours in CITYSCAPES_INSTANCE_LABELS:
        ref = official[ours.id]
        assert (ours.name, ours.has_instances, ours.ignore_in_eval, ours.color) == (
            ref.name, ref.hasInstances, ref.ignoreInEval, tuple(ref.color))
    # every label with instances is in our table (so no instance pixel is unrecognised)…
    assert {lb.id for lb in labels.labels if lb.hasInstances} == {lb.id for lb in CITYSCAPES_INSTANCE_LABELS}
    # …and the 8 detection classes are the evaluated ones, in id order (= trainId order, mmdetection's order)
    evaluated = sorted((lb for lb in labels.labels if lb.hasInstances and not lb.ignoreInEval), key=lambda lb: lb.id)
    assert tuple(lb.name for lb in evaluated) == CITYSCAPES_CLASSES
    assert [lb.trainId for lb in evaluated] == sorted(lb.trainId for lb in evaluated)
    assert max(lb.id for lb in labels.labels) == 33


def test_classes() -> None:
    assert CITYSCAPES_CLASSES == ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
    assert [ID[n] for n in CITYSCAPES_CLASSES] == [24, 25, 26, 27, 28, 31, 32, 33]


# --------------------------------------------------------------------------- hand-built instance ids


def test_instances_groups_and_stuff(hand_root: Path) -> None:
    ds = CityscapesDetection(str(hand_root), "val")
    assert len(ds) == 2 and ds.ids == [1, 2]
    assert ds.classes == list(CITYSCAPES_CLASSES) and ds.num_classes == 8
    assert ds.label_to_cat_id == [1, 2, 3, 4, 5, 6, 7, 8]
    assert ds.get_image_info(0) == {"id": 1, "file_name": "aachen/aachen_000000_000019_leftImg8bit.png",
                                    "height": 40, "width": 64}
    assert ds.get_image_info(1)["file_name"].startswith("bremen/")

    image, target = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 40, 64)
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes)
    assert target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY and target["boxes"].canvas_size == (40, 64)
    # ordered by pixel value: person 24000, person 24001, car 26000; the group, caravan and stuff are not boxes
    assert target["boxes"].tolist() == [[3, 12, 9, 20], [30, 20, 41, 30], [50, 0, 64, 15]]
    assert target["labels"].dtype == torch.int64 and target["labels"].tolist() == [0, 0, 2]
    assert target["image_id"] == 1 and target["orig_size"] == (40, 64)

    ann = ds.get_annotation(0)
    assert ann["areas"].tolist() == [48, 40 + 14, 120 + 1]
    assert ann["crowd_boxes"].tolist() == [[2, 30, 21, 38]] and ann["crowd_labels"].tolist() == [2]
    assert ann["crowd_areas"].tolist() == [152]

    _, target = ds[1]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,) and target["image_id"] == 2
    assert ds.get_annotation(1)["crowd_boxes"].tolist() == [[4, 2, 10, 6]]


def test_coco_ground_truth(hand_root: Path) -> None:
    coco = CityscapesDetection(str(hand_root), "val").coco
    assert sorted(coco.imgs) == [1, 2] and coco.imgs[2]["height"] == 30
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CITYSCAPES_CLASSES)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    plain = [(a["category_id"], a["bbox"], a["area"]) for a in anns if not a["iscrowd"]]
    assert plain == [(1, [3, 12, 6, 8], 48), (1, [30, 20, 11, 10], 54), (3, [50, 0, 14, 15], 121)]
    assert [(a["category_id"], a["bbox"], a["area"]) for a in anns if a["iscrowd"]] == [(3, [2, 30, 19, 8], 152)]
    assert [(a["category_id"], a["iscrowd"]) for a in coco.loadAnns(coco.getAnnIds(imgIds=[2]))] == [(1, 1)]


def _dets(boxes: list[list[float]], labels: list[int], scores: list[float]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "scores": torch.tensor(scores)}


def test_detections_on_groups_are_ignored(hand_root: Path) -> None:
    ds = CityscapesDetection(str(hand_root), "val")
    gt = ds.get_annotation(0)
    ev = CocoEvaluator(ds.coco, ds.label_to_cat_id, ds.classes)

    def ap(extra_box: list[float], extra_label: int) -> float:
        ev.reset()
        boxes = gt["boxes"].tolist() + [extra_box]
        ev.process([1, 2], [_dets(boxes, [*gt["labels"].tolist(), extra_label], [1.0] * len(gt["labels"]) + [2.0]),
                            _dets([], [], [])])
        return ev.evaluate()["bbox/mAP"]

    # the best-scored detection lies on the car group: ignored, AP stays perfect
    assert ap([3.0, 31.0, 12.0, 37.0], 2) == pytest.approx(1.0)
    # the same detection where there is neither an instance nor a group: a false positive ahead of every hit
    assert ap([3.0, 0.0, 12.0, 6.0], 2) < 1.0


def test_filter_empty_keeps_image_ids(hand_root: Path) -> None:
    ds = CityscapesDetection(str(hand_root), "val", filter_empty=True)
    assert len(ds) == 1 and ds.ids == [1] and ds[0][1]["image_id"] == 1
    assert sorted(ds.coco.imgs) == [1, 2]  # the evaluator's ground truth still holds the whole split


def test_transforms_and_pickling(hand_root: Path) -> None:
    ds = CityscapesDetection(str(hand_root), "val", transforms=v2.RandomHorizontalFlip(p=1.0))
    _, target = ds[0]
    assert target["boxes"].tolist()[0] == [64 - 9, 12, 64 - 3, 20]
    assert ds.coco is not None and ds._coco is not None
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._coco is None  # loader workers do not receive the COCO index…
    assert copy[0][1]["boxes"].tolist() == target["boxes"].tolist()
    assert len(copy.coco.anns) == len(ds.coco.anns)  # …and it is rebuilt on demand


# --------------------------------------------------------------------------- errors


def test_missing_root_shows_tree(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as e:
        CityscapesDetection(str(tmp_path / "nope"), "train")
    msg = str(e.value)
    assert "does not exist" in msg and str(tmp_path / "nope") in msg
    for part in ("leftImg8bit/", "gtFine/", "train/", "<city>/", "_leftImg8bit.png", "_gtFine_instanceIds.png",
                 "dataset.root=/path/to/cityscapes", "└──"):
        assert part in msg, part
    assert isinstance(e.value, FileNotFoundError)


def test_missing_split_folders(hand_root: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"leftImg8bit/train does not exist(.|\n)*dataset.root="):
        CityscapesDetection(str(hand_root), "train")
    with pytest.raises(DatasetNotFoundError, match="did you mean `dataset.root="):
        CityscapesDetection(str(hand_root / "leftImg8bit"), "val")
    (hand_root / "gtFine" / "val").rename(hand_root / "gtFine" / "elsewhere")
    with pytest.raises(DatasetNotFoundError, match=r"gtFine/val does not exist"):
        CityscapesDetection(str(hand_root), "val")
    with pytest.raises(ValueError, match="split must be one of"):
        CityscapesDetection(str(hand_root), "test")


def test_no_images(tmp_path: Path) -> None:
    for sub in ("leftImg8bit/val/x", "gtFine/val/x"):
        (tmp_path / sub).mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="No <city>/\\*_leftImg8bit.png images"):
        CityscapesDetection(str(tmp_path), "val")


def test_missing_instance_ids_names_the_file(hand_root: Path) -> None:
    inst = hand_root / "gtFine/val/bremen/bremen_000000_000001_gtFine_instanceIds.png"
    inst.unlink()
    with pytest.raises(DatasetNotFoundError, match=f"{re.escape(str(inst))}.*does not exist"):
        CityscapesDetection(str(hand_root), "val")


@pytest.mark.parametrize("problem", ["garbage", "truncated", "8-bit", "bad-value", "stuff-instance", "size"])
def test_bad_instance_ids_name_the_file(hand_root: Path, problem: str) -> None:
    inst = hand_root / "gtFine/val/bremen/bremen_000000_000001_gtFine_instanceIds.png"
    ids = np.full((30, 20), 7, dtype=np.uint16)
    match = {"garbage": "Could not decode", "truncated": "Could not decode", "8-bit": "mode 'L'",
             "bad-value": "pixel value 500 is not a Cityscapes id", "stuff-instance": "pixel value 7001",
             "size": "is 21x30 but its image"}[problem]
    if problem == "garbage":
        inst.write_bytes(b"not a png at all")
    elif problem == "truncated":
        inst.write_bytes(inst.read_bytes()[:60])
    elif problem == "8-bit":
        Image.new("L", (20, 30), 7).save(inst)
    elif problem == "size":
        Image.fromarray(np.full((30, 21), 7, dtype=np.uint16)).save(inst)
    else:
        ids[3, 3] = 500 if problem == "bad-value" else 7001
        Image.fromarray(ids).save(inst)
    with pytest.raises(ValueError, match=match) as e:
        CityscapesDetection(str(hand_root), "val")
    assert str(inst) in str(e.value)


def test_undecodable_image_names_the_file(hand_root: Path) -> None:
    ds = CityscapesDetection(str(hand_root), "val")
    left = hand_root / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png"
    left.write_bytes(b"broken")
    with pytest.raises(BadImageError, match=f"Bad image {re.escape(str(left))}: it cannot be decoded"):
        ds[0]


# --------------------------------------------------------------------------- the shapes in Cityscapes layout


def _expected(split: str) -> list[tuple[list[int], set[int]]]:
    """Per image, from the generator: sorted labels of the non-group objects, and the labels that have groups."""
    out, n = [], 0
    for _, anns, _, _ in render_shapes(SMALL[f"num_{split}"], split_rng(SMALL["seed"], split)):
        labels, groups = [], set()
        for ann in anns:
            label = CITYSCAPES_CLASSES.index(SHAPE_TO_CITYSCAPES[SHAPES_CLASSES[ann["category_id"] - 1]])
            if n % GROUP_EVERY == GROUP_EVERY - 1:
                groups.add(label)
            else:
                labels.append(label)
            n += 1
        out.append((sorted(labels), groups))
    return out


@pytest.mark.parametrize("split", ["train", "val"])
def test_shapes_layout_matches_generator(shapes_cs_root: Path, split: str) -> None:
    ds = CityscapesDetection(str(shapes_cs_root), split)
    expected = _expected(split)
    assert len(ds) == len(expected)
    crowd_total = 0
    for index, ((labels, groups), (img, *_)) in enumerate(
            zip(expected, render_shapes(len(expected), split_rng(SMALL["seed"], split)))):
        info = ds.get_image_info(index)
        assert info["id"] == index + 1 and info["file_name"] == f"{CITIES[split]}/{CITIES[split]}_000000_" \
            f"{index + 1:06d}_leftImg8bit.png"
        assert (info["height"], info["width"]) == (img.height, img.width)
        image, target = ds[index]
        assert np.array_equal(image.permute(1, 2, 0).numpy(), np.asarray(img))  # lossless: the very pixels
        assert sorted(target["labels"].tolist()) == labels
        boxes = target["boxes"]
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= img.width).all() and (boxes[:, 3] <= img.height).all()
        ann = ds.get_annotation(index)
        assert set(ann["crowd_labels"].tolist()) == groups  # all groups of one class share one pixel value
        crowd_total += len(groups)
    assert crowd_total > 0  # the sample is big enough to exercise groups


def test_shapes_layout_perfect_detections_give_ap_1(shapes_cs_root: Path) -> None:
    ds = CityscapesDetection(str(shapes_cs_root), "val")
    ev = CocoEvaluator(ds.coco, ds.label_to_cat_id, ds.classes)
    ids, dets = [], []
    for i in range(len(ds)):
        gt = ds.get_annotation(i)
        # the ground truth, plus one lower-scored detection on every group region (ignored, not false positives)
        boxes = np.concatenate([gt["boxes"], gt["crowd_boxes"]]).tolist()
        labels = [*gt["labels"].tolist(), *gt["crowd_labels"].tolist()]
        scores = [1.0] * len(gt["labels"]) + [0.5] * len(gt["crowd_labels"])
        ids.append(gt["image_id"])
        dets.append(_dets(boxes, labels, scores))
    assert sum(len(d["labels"]) for d in dets) > len(ds.coco.getAnnIds(iscrowd=False))  # groups were detected
    ev.process(ids, dets)
    metrics = ev.evaluate()
    assert metrics["bbox/mAP"] == pytest.approx(1.0) and metrics["bbox/mAP_50"] == pytest.approx(1.0)
    present = {CITYSCAPES_CLASSES.index(c) for c in SHAPE_TO_CITYSCAPES.values()}
    for label, row in enumerate(ev.per_class):
        assert (row["AP"] == pytest.approx(1.0)) if label in present else np.isnan(row["AP"])


def test_shapes_cityscapes_files(shapes_cs_root: Path, tmp_path: Path) -> None:
    files = _files(shapes_cs_root)
    n = SMALL["num_train"] + SMALL["num_val"]
    assert len(files) == 3 * n + 1 and MARKER in files
    again = write_shapes_cityscapes(tmp_path / "again", **SMALL)
    assert _files(again) == files  # deterministic bytes
    marker = json.loads(files[MARKER])
    assert marker["classes"] == SHAPE_TO_CITYSCAPES and marker["generator"]["seed"] == SMALL["seed"]

    poly = json.loads(files[f"gtFine/val/{CITIES['val']}/{CITIES['val']}_000000_000001_gtFine_polygons.json"])
    assert list(poly) == ["imgHeight", "imgWidth", "objects"] and poly["objects"][0]["label"] == "road"
    names = {o["label"] for f, data in files.items() if f.endswith("_polygons.json")
             for o in json.loads(data)["objects"]}
    assert names <= {"road", *SHAPE_TO_CITYSCAPES.values(), *(f"{c}group" for c in SHAPE_TO_CITYSCAPES.values())}
    assert any(n.endswith("group") for n in names)
    city = CITIES["val"]
    with Image.open(shapes_cs_root / f"gtFine/val/{city}/{city}_000000_000001_gtFine_instanceIds.png") as inst:
        assert inst.mode.startswith("I;16") and inst.size == (poly["imgWidth"], poly["imgHeight"])


def test_shapes_cityscapes_replaces_only_its_own(tmp_path: Path) -> None:
    root = write_shapes_cityscapes(tmp_path / "cs", num_train=1, num_val=1)
    write_shapes_cityscapes(root, num_train=2, num_val=1)  # ours: replaced
    assert len(list((root / "leftImg8bit/train").rglob("*.png"))) == 2
    real = tmp_path / "real"
    (real / "leftImg8bit").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_shapes_cityscapes(real, num_train=1, num_val=1)
    assert (real / "leftImg8bit").is_dir() and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(TypeError, match="unexpected keyword"):
        write_shapes_cityscapes(tmp_path / "x", num_trian=3)


def test_polygons_reproduce_instance_ids(shapes_cs_root: Path) -> None:
    """The polygons files are real Cityscapes annotations: the official tool draws our instance-id PNGs from them."""
    pytest.importorskip("cityscapesscripts.helpers.annotation")
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage

    polys = sorted(shapes_cs_root.glob("gtFine/*/*/*_gtFine_polygons.json"))
    assert len(polys) == SMALL["num_train"] + SMALL["num_val"]
    for path in polys:
        annotation = Annotation()
        annotation.fromJsonFile(str(path))
        official = np.asarray(createInstanceImage(annotation, "ids"), dtype=np.int64)
        with Image.open(str(path).replace("_polygons.json", "_instanceIds.png")) as png:
            ours = np.asarray(png, dtype=np.int64)
        assert np.array_equal(official, ours), path


def test_config_composes_and_instantiates(shapes_cs_root: Path) -> None:
    from hydra.utils import instantiate

    from framework.config.cli import check_overrides

    cfg = check_overrides("train", ["dataset=cityscapes", f"dataset.root={shapes_cs_root}"])
    assert cfg.dataset.num_classes is None and cfg.dataset.metric == "coco"  # the classes come from the data…
    assert (cfg.dataset.min_size, cfg.dataset.max_size) == (1024, 2048)
    train, val = instantiate(cfg.dataset.train), instantiate(cfg.dataset.val)
    assert train.num_classes == 8  # …the Cityscapes label set
    assert isinstance(train, CityscapesDetection) and train.split == "train" and val.split == "val"
    assert all(len(train[i][1]["labels"]) > 0 for i in range(len(train)))  # filter_empty
    assert len(val) == SMALL["num_val"]
