"""The image-file scan: each kind of damage is found and named, sound files pass, results come in index order."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from framework.data.datasets.shapes import ShapesDataset
from framework.data.scan import BadImage, check_image, decode_truncated, scan_images
from tests.data.bad_files import as_truncated_png, copy_shapes, cut_tail, image_file, write_garbage


@pytest.fixture
def root(shapes_root: Path, tmp_path: Path) -> Path:
    return copy_shapes(shapes_root, tmp_path / "shapes")


def test_sound_files_pass(root: Path) -> None:
    jpg = image_file(root, "val", 0)
    size = Image.open(jpg).size[::-1]
    assert check_image(jpg, size) is None
    assert check_image(jpg, size, decode=True) is None
    png = jpg.with_suffix(".png")
    Image.open(jpg).save(png)
    assert check_image(png, size) is None


def test_jpeg_with_bytes_after_its_end_marker_passes(root: Path) -> None:
    """Some cameras pad JPEGs after the EOI marker; they decode, so they are not reported."""
    jpg = image_file(root, "val", 0)
    jpg.write_bytes(jpg.read_bytes() + b"\x00" * 16)
    assert check_image(jpg) is None


@pytest.mark.parametrize("damage, expected, repairable", [
    (write_garbage, "not an image file", False),
    (lambda p: cut_tail(p, 0.6), "truncated (no JPEG end marker)", True),
    (lambda p: cut_tail(p, 0.995), "truncated (no JPEG end marker)", True),
    (lambda p: cut_tail(p, 0.03), "truncated or corrupt", False),  # cut inside the header
    (lambda p: p.write_bytes(b""), "the file is empty", False),
    (lambda p: p.unlink(), "the file does not exist", False),
])
def test_damaged_jpeg_is_named_and_classified(root: Path, damage, expected: str, repairable: bool) -> None:
    jpg = image_file(root, "val", 1)
    damage(jpg)
    for decode in (False, True):
        finding = check_image(jpg, decode=decode)
        assert expected in finding.reason and finding.repairable is repairable


def test_repair_decodes_what_a_truncated_jpeg_holds(root: Path) -> None:
    """The same pixels as PIL's process-wide LOAD_TRUNCATED_IMAGES, without touching it."""
    jpg = image_file(root, "val", 0)
    whole = np.asarray(Image.open(jpg).convert("RGB"))
    cut_tail(jpg, 0.6)
    repaired = np.asarray(decode_truncated(jpg))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(jpg) as im:
            reference = np.asarray(im.convert("RGB"))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert np.array_equal(repaired, reference) and repaired.shape == whole.shape
    top = whole.shape[0] // 8  # the top rows come from the data that is left
    assert np.abs(repaired[:top].astype(int) - whole[:top]).mean() < 1.0
    assert check_image(jpg, whole.shape[:2]).repairable
    assert not check_image(jpg, (whole.shape[0] + 1, whole.shape[1])).repairable  # still the wrong picture
    with pytest.raises(ValueError, match="only a JPEG"):
        decode_truncated(as_truncated_png(root, "val", 2))


def test_truncated_and_corrupted_png(root: Path) -> None:
    png = as_truncated_png(root, "val", 2)
    assert "truncated or corrupt" in check_image(png).reason and not check_image(png).repairable
    whole = image_file(root, "val", 3).with_suffix(".png")
    Image.open(image_file(root, "val", 3)).save(whole)
    data = bytearray(whole.read_bytes())
    data[-30] ^= 0xFF  # inside the last data chunk: its CRC no longer matches
    whole.write_bytes(bytes(data))
    assert "truncated or corrupt" in check_image(whole).reason
    whole.write_bytes(bytes(data[:-12]))  # only the IEND chunk missing: PIL's load() would accept it, verify() not
    assert "truncated or corrupt" in check_image(whole).reason


def test_size_disagreeing_with_annotations(root: Path) -> None:
    jpg = image_file(root, "val", 0)
    w, h = Image.open(jpg).size
    reason = check_image(jpg, (h + 1, w)).reason
    assert f"it is {w}x{h} pixels but the annotations say {w}x{h + 1}" in reason


def test_format_the_loader_cannot_decode(root: Path) -> None:
    bmp = root / "x.bmp"
    Image.open(image_file(root, "val", 0)).save(bmp)
    assert "BMP image, which the data loader cannot decode" in check_image(bmp).reason


def test_scan_reports_every_bad_image_in_index_order(root: Path) -> None:
    ds = ShapesDataset(str(root), "val")
    write_garbage(ds.image_path(5))
    cut_tail(ds.image_path(1))
    ds.image_path(3).unlink()
    ann = root / "annotations" / "instances_val.json"  # image 6's record gets another size
    data = json.loads(ann.read_text())
    next(r for r in data["images"] if r["id"] == ds.ids[6])["width"] += 3
    ann.write_text(json.dumps(data))
    ds = ShapesDataset(str(root), "val")

    bad = scan_images(ds, workers=4)
    assert [b.index for b in bad] == [1, 3, 5, 6]
    assert all(isinstance(b, BadImage) and b.path == ds.image_path(b.index) for b in bad)
    assert ["truncated", "does not exist", "not an image", "annotations say"] == [
        next(k for k in ("truncated", "does not exist", "not an image", "annotations say") if k in b.reason)
        for b in bad]
    assert [b.repairable for b in bad] == [True, False, False, False]
    assert scan_images(ds, workers=1) == bad
    assert scan_images(ds, indices=[0, 1, 2]) == bad[:1]


def test_repairs_in_threads_leave_other_decodes_strict(root: Path) -> None:
    """Repairs run beside full decodes in the scan's pool: none of them may start accepting truncated files."""
    ds = ShapesDataset(str(root), "val")
    for i in range(0, 8, 2):
        cut_tail(ds.image_path(i), 0.5)
    bad = scan_images(ds, workers=8, decode=True)
    assert [(b.index, b.repairable) for b in bad] == [(0, True), (2, True), (4, True), (6, True)]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_clean_dataset_has_no_bad_images(shapes_root: Path) -> None:
    assert scan_images(ShapesDataset(str(shapes_root), "train")) == []
