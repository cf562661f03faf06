"""CocoDetection on generated annotation files: valid ones, ones with missing, mistyped or absurd fields, wrong
top-level types, files cut short, and arbitrary text or bytes. Whatever the file, building the dataset, reading
every sample and building its evaluation index either works — and then every box keeps the contract (finite,
positive size, inside the image) — or fails with a DatasetError / DatasetNotFoundError that the tools print without
a traceback; never with a KeyError, TypeError… from deep inside."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from framework.data.datasets.coco import CocoDetection, DatasetNotFoundError
from framework.data.errors import DatasetError

IMAGES = {"a.jpg": ("RGB", 48, 32), "b.png": ("L", 32, 40), "c.jpg": ("RGB", 20, 20)}  # name: (mode, width, height)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "imgs").mkdir()
    for name, (mode, w, h) in IMAGES.items():
        Image.new(mode, (w, h), 90).save(root / "imgs" / name)
    (root / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


NUMBERS = st.one_of(st.integers(-100, 100), st.floats(-1e3, 1e3), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -0.0, 1e-40, 2**63, -(2**63) - 1, 10**400, 1e300, 3.4e38, 3.5e38]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=4))
ANY_JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                            max_size=3), max_leaves=6)
# Mostly plausible coordinates; sometimes negative, NaN, inf, huge, or beyond what float32 holds.
COORD = st.one_of(st.floats(-10, 60), st.integers(-10, 60), st.floats(0, 40), NUMBERS)
BBOX = st.lists(COORD, min_size=4, max_size=4)
# Wrong values for the fields of a record: what a broken converter or a hand edit writes.
BAD = st.one_of(ANY_JSON, st.sampled_from([0, -1, 2**63, 1.0, 0.5, True, "1", "", [], {}, None, [1, 2, 3],
                                           [1, 2, 3, "4"], [1, 2, 3, 4, 5], [[1, 2, 3, 4]]]))


@st.composite
def documents(draw: st.DrawFn) -> dict:
    """A COCO document that is valid (though its boxes may be degenerate), then damaged at 0-2 random places."""
    cat_ids = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3, unique=True))
    images = []
    for image_id in draw(st.lists(st.integers(1, 5), max_size=4, unique=True)):
        name = draw(st.sampled_from([*IMAGES] * 3 + ["broken.jpg", "missing.jpg"]))
        rec = {"id": image_id, "file_name": name}
        w, h = IMAGES.get(name, ("", 30, 30))[1:]
        size = draw(st.sampled_from(["right"] * 3 + ["none", "wrong"]))
        if size != "none":
            rec.update(width=w if size == "right" else 100, height=h if size == "right" else 10)
        images.append(rec)
    anns = []
    for ann_id in draw(st.lists(st.integers(1, 50), max_size=10, unique=True)):
        rec = {"id": ann_id, "image_id": draw(st.integers(1, 6)), "category_id": draw(st.sampled_from(cat_ids)),
               "bbox": draw(BBOX)}
        if draw(st.booleans()):
            rec.update(iscrowd=draw(st.sampled_from([0, 0, 1])), area=draw(st.floats(0, 100)))
        anns.append(rec)
    doc = {"images": images, "categories": [{"id": c, "name": f"c{c}"} for c in cat_ids], "annotations": anns}
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        section = draw(st.sampled_from(["images", "categories", "annotations"]))
        records = doc.get(section)
        if draw(st.integers(0, 9)) == 0 or not isinstance(records, list) or not records:
            if draw(st.booleans()):
                doc.pop(section, None)
            else:
                doc[section] = draw(ANY_JSON)
            continue
        k = draw(st.integers(0, len(records) - 1))
        if not isinstance(records[k], dict) or draw(st.integers(0, 9)) == 0:
            records[k] = draw(ANY_JSON)
            continue
        key = draw(st.sampled_from(sorted(records[k]) + ["id"]))
        if draw(st.booleans()):
            records[k].pop(key, None)
        else:
            records[k][key] = draw(BAD)
    return doc


@st.composite
def annotation_files(draw: st.DrawFn) -> bytes:
    """The bytes of an annotation file: a document (maybe cut short), another JSON value, or any text or bytes."""
    kind = draw(st.sampled_from(["document"] * 8 + ["cut", "json", "text", "bytes"]))
    if kind == "text":
        return draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    text = json.dumps(draw(ANY_JSON) if kind == "json" else draw(documents()))  # NaN/Infinity as Python writes them
    if kind == "cut":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    return text.encode("utf-8", "surrogatepass")


def _check_sample(ds: CocoDetection, index: int) -> None:
    image, target = ds[index]
    h, w = target["orig_size"]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, h, w)
    boxes = target["boxes"].as_subclass(torch.Tensor)
    assert boxes.dtype == torch.float32 and boxes.shape[1:] == (4,)
    assert torch.isfinite(boxes).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    labels = target["labels"]
    assert labels.dtype == torch.int64 and len(labels) == len(boxes)
    assert ((labels >= 0) & (labels < ds.num_classes)).all()
    assert target["image_id"] == ds.get_image_info(index)["id"] == ds.ids[index]


def _exercise(root: Path, content: bytes) -> str:
    """Build, read and index a dataset from `content`; returns what happened (for the fuzzer's statistics)."""
    (root / "ann.json").write_bytes(content)
    try:
        ds = CocoDetection(str(root), "ann.json", "imgs")
        for index in range(len(ds)):
            try:
                _check_sample(ds, index)
            except DatasetError as e:  # a missing or undecodable image file: reported with its path
                assert "Bad image" in str(e)
        assert all(not (math.isnan(v) or v < 0) for v in ds.box_report.values())
        assert len(ds.coco.imgs) >= len(ds)  # the evaluator's index builds from any file the dataset accepted
        return (f"loaded: {'some' if len(ds) else 'no'} images, {'some' if any(ds.box_report.values()) else 'no'} "
                "boxes dropped or clipped")
    except (DatasetError, DatasetNotFoundError) as e:
        return f"{type(e).__name__}: {str(e).split(': ')[1][:25] if ': ' in str(e) else str(e)[:25]}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=annotation_files())
@example(content=b'{"images": [{"id": 1, "file_name": "a.jpg", "width": 48, "height": 32}], "categories": '
                 b'[{"id": 1, "name": "x"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, '
                 b'"bbox": [-1e400, 2, 1e400, 5]}, {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 2, NaN, 4]}'
                 b', {"id": 3, "image_id": 1, "category_id": 1, "bbox": [100000000000000000000000000000000000000000, '
                 b'0, 1, 1]}, {"id": 4, "image_id": 1, "category_id": 1, "bbox": [1e-45, 1, 1e-46, 2]}]}')
@example(content=b'{"images": [{"id": 1, "file_name": "\\ud800.jpg"}], "categories": []}')
@example(content=b"[" * 100_000)
def test_any_annotation_file_works_or_raises_dataset_error(root: Path, content: bytes) -> None:
    event(_exercise(root, content))  # pytest --hypothesis-show-statistics: how often each outcome was reached


def test_fuzz_examples_that_work_keep_the_contract(root: Path) -> None:
    """The fuzzer's happy path is not vacuous: a mixed file loads, with its bad boxes counted."""
    doc = {"images": [{"id": i, "file_name": n, "width": w, "height": h} for i, (n, (_, w, h)) in
                      enumerate(IMAGES.items(), start=1)],
           "categories": [{"id": 1, "name": "x"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
                           {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 2, -3, 4]},
                           {"id": 3, "image_id": 3, "category_id": 1, "bbox": [10, 10, 30, 30]},
                           {"id": 4, "image_id": 3, "category_id": 1, "bbox": [float("nan"), 1, 2, 3]}]}
    _exercise(root, json.dumps(doc).encode())
    ds = CocoDetection(str(root), "ann.json", "imgs")
    assert ds.box_report == {"clipped": 1, "dropped_empty": 1, "dropped_nonfinite": 1, "dropped_outside": 0,
                             "dropped_no_image": 0}
    assert ds[2][1]["boxes"].tolist() == [[10, 10, 20, 20]]
