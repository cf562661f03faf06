"""The synthetic shapes generator and dataset."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from framework.data.datasets import shapes
from framework.data.datasets.coco import DatasetNotFoundError
from framework.data.datasets.shapes import SHAPES_CLASSES, ShapesDataset, generate_shapes

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(num_train=12, num_val=4)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "shapes", **SMALL)


def test_deterministic(small_root: Path, tmp_path: Path) -> None:
    again = generate_shapes(tmp_path / "again", **SMALL)
    a, b = _files(small_root), _files(again)
    assert a.keys() == b.keys() and len(a) == 12 + 4 + 2
    assert a == b
    other = _files(generate_shapes(tmp_path / "other", seed=1, **SMALL))
    assert other.keys() == a.keys()
    assert other["images/train/000001.jpg"] != a["images/train/000001.jpg"]
    assert other["annotations/instances_val.json"] != a["annotations/instances_val.json"]


def test_layout_and_json_valid(small_root: Path) -> None:
    for split, n in (("train", 12), ("val", 4)):
        ann_file = small_root / "annotations" / f"instances_{split}.json"
        raw = json.loads(ann_file.read_text())
        assert {"info", "licenses", "images", "annotations", "categories"} <= raw.keys()
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(ann_file))
        cats = coco.loadCats(coco.getCatIds())
        assert [c["id"] for c in cats] == [1, 2, 3, 4]
        assert tuple(c["name"] for c in cats) == SHAPES_CLASSES
        assert all(c["supercategory"] == "shape" for c in cats)
        assert len(coco.imgs) == n
        for img in coco.imgs.values():
            path = small_root / "images" / split / img["file_name"]
            with Image.open(path) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                assert im.size == (img["width"], img["height"])
            assert 112 <= img["width"] <= 160 and 112 <= img["height"] <= 160
            anns = coco.imgToAnns[img["id"]]
            assert 1 <= len(anns) <= 5
            for ann in anns:
                x, y, w, h = ann["bbox"]
                assert w > 0 and h > 0
                assert x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
                assert 10 <= max(w, h) <= 70  # about the 16..64 px design range
                assert ann["iscrowd"] == 0 and 0 < ann["area"] <= w * h
                rle = ann["segmentation"]  # exact masks: compressed RLE of the image's size
                assert rle["size"] == [img["height"], img["width"]] and isinstance(rle["counts"], str)


def test_boxes_are_tight_around_painted_pixels() -> None:
    """Render losslessly and compare each annotation with the pixels that changed."""
    rng = np.random.default_rng(123)
    checked = 0
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(112, 161, size=2))
        bg = shapes._background(rng, h, w)
        img, anns, _, _ = shapes._paint_shapes(rng, bg, max_objects=5)
        changed = np.abs(np.asarray(img).astype(int) - bg.astype(int)).sum(-1) > 0
        boxes = [[int(v) for v in a["bbox"]] for a in anns]
        covered = np.zeros_like(changed)
        for x, y, bw, bh in boxes:
            covered[y : y + bh, x : x + bw] = True
        assert not (changed & ~covered).any(), "painted pixels outside every box"
        for i, (x, y, bw, bh) in enumerate(boxes):
            x0, y0, x1, y1 = x - 2, y - 2, x + bw + 2, y + bh + 2
            isolated = all(
                ox + ow <= x0 or ox >= x1 or oy + oh <= y0 or oy >= y1
                for j, (ox, oy, ow, oh) in enumerate(boxes)
                if j != i
            )
            if not isolated:
                continue
            ys, xs = np.nonzero(changed[max(y0, 0) : y1, max(x0, 0) : x1])
            ys, xs = ys + max(y0, 0), xs + max(x0, 0)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + bw, y + bh)
            checked += 1
    assert checked >= 20


def test_shapes_dataset_autogenerates_at_the_default_root_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys) -> None:
    real = shapes.generate_shapes
    calls: list[str] = []

    def small(root):  # the default 2300 images would make the test slow
        calls.append(str(root))
        return real(root, num_train=5, num_val=3)

    monkeypatch.setattr(shapes, "generate_shapes", small)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError) as info:  # a mistyped root gets no fake dataset
        ShapesDataset(root="data/shapez", split="val")
    assert calls == [] and not (tmp_path / "data").exists()
    msg = str(info.value)
    assert msg.startswith("Shapes dataset root data/shapez does not exist.") and "make_shapes.py --root data/shapez" in msg
    assert f"The nearest existing folder is {tmp_path}" in msg and "└── instances_val.json" in msg

    ds = ShapesDataset(root="./data/shapes/", split="val")  # the default root, however written
    assert calls == ["./data/shapes/"]
    assert "generating" in capsys.readouterr().out
    assert len(ds) == 3 and ds.classes == list(SHAPES_CLASSES) and ds.num_classes == 4
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    assert target["boxes"].shape[0] == target["labels"].shape[0] >= 1
    assert 0 <= int(target["labels"].min()) and int(target["labels"].max()) < 4

    train = ShapesDataset(root=str(tmp_path / "data" / "shapes"), split="train")  # already there: no regeneration
    assert len(calls) == 1 and len(train) == 5
    with pytest.raises(DatasetNotFoundError, match=f"did you mean {tmp_path / 'data' / 'shapes'}"):
        ShapesDataset(root="data/shapez")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="Annotation file empty/annotations/instances_train.json does not"):
        ShapesDataset(root="empty")
    with pytest.raises(DatasetNotFoundError):
        ShapesDataset(root="data/shapes_gone", generate=False)
    assert ShapesDataset(root="elsewhere", split="val", generate=True).num_classes == 4  # an explicit opt-in
    assert calls[-1] == "elsewhere"
    assert shapes.is_default_root("data/x/../shapes") and shapes.is_default_root(tmp_path / "data" / "shapes")
    assert not shapes.is_default_root("elsewhere/data/shapes")


def test_generation_is_atomic_and_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError):
        generate_shapes(foreign, **SMALL)
    assert (foreign / "thesis.tex").read_text() == "precious"

    real = shapes._write_split

    def crash_on_val(out, split, *args, **kwargs):
        if split == "val":
            raise KeyboardInterrupt
        return real(out, split, *args, **kwargs)

    monkeypatch.setattr(shapes, "_write_split", crash_on_val)
    with pytest.raises(KeyboardInterrupt):
        generate_shapes(tmp_path / "half", **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # nothing half-written


def _load_cli():
    spec = importlib.util.spec_from_file_location("make_shapes_cli", REPO / "tools" / "make_shapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_shapes_cli(tmp_path: Path, capsys) -> None:
    root = tmp_path / "cli_shapes"
    args = ["--root", str(root), "--num-train", "3", "--num-val", "2", "--seed", "5"]
    # One real subprocess proves the script runs standalone (imports, __main__, exit code);
    # the other paths run in-process because each interpreter start imports torch (~5 s).
    out = subprocess.run([sys.executable, str(REPO / "tools" / "make_shapes.py"), *args],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "coco layout, 3 train / 2 val images" in out.stdout
    assert str(root) in out.stdout
    assert len(list((root / "images" / "train").glob("*.jpg"))) == 3
    assert _files(root) == _files(generate_shapes(tmp_path / "same", num_train=3, num_val=2, seed=5))

    cli = _load_cli()
    capsys.readouterr()
    assert cli.main(args[:-1] + ["6"]) == 0
    assert "already exists" in capsys.readouterr().out
    info = json.loads((root / "annotations" / "instances_train.json").read_text())["info"]
    assert info["generator"]["seed"] == 5  # skipped: untouched
    assert cli.main(args[:-1] + ["6", "--force"]) == 0
    assert "wrote" in capsys.readouterr().out
    info = json.loads((root / "annotations" / "instances_train.json").read_text())["info"]
    assert info["generator"]["seed"] == 6


def test_fixed_image_size(small_root: Path, tmp_path: Path) -> None:
    root = generate_shapes(tmp_path / "fixed", num_train=3, num_val=2, image_size=(48, 80))
    for split in ("train", "val"):
        raw = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        assert {(i["height"], i["width"]) for i in raw["images"]} == {(48, 80)}
        assert raw["info"]["generator"]["image_size"] == [48, 80]
        for img in raw["images"]:
            with Image.open(root / "images" / split / img["file_name"]) as im:
                assert im.size == (80, 48)  # PIL: (width, height)
        for ann in raw["annotations"]:
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and x + w <= 80 and y + h <= 48
    # unset: the generator info (hence the default dataset's bytes) is unchanged
    info = json.loads((small_root / "annotations" / "instances_train.json").read_text())["info"]
    assert "image_size" not in info["generator"]
    with pytest.raises(ValueError, match="image_size"):
        generate_shapes(tmp_path / "bad", num_train=1, num_val=0, image_size=(16, 80))


@pytest.mark.parametrize("layout,marker", [("voc", "VOC2007/ImageSets/Main/trainval.txt"),
                                           ("cityscapes", "gtFine/val")])
def test_make_shapes_cli_other_layouts(tmp_path: Path, capsys, layout: str, marker: str) -> None:
    root = tmp_path / layout
    assert _load_cli().main(["--layout", layout, "--root", str(root), "--num-train", "3", "--num-val", "2"]) == 0
    assert f"{layout} layout, 3 train / 2 val images" in capsys.readouterr().out
    assert (root / marker).exists()
