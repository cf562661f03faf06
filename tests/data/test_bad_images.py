"""dataset.on_bad_image: the error that lists bad files, the dataset without them (indices, metadata, evaluation),
and the replacement of images that fail at load time, through Mosaic partners and loader workers."""
from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from framework.data import bad_images
from framework.data.bad_images import (
    RepairImages, SkipImages, check_on_bad_image, load_substituting, screen_dataset, skipped_images_report,
)
from framework.data.datasets.shapes import ShapesDataset
from framework.data.datasets.voc import VOCDetection
from framework.data.errors import BadImageError, DatasetError
from framework.data.loader import REPAIRED_IMAGES, SKIPPED_IMAGES, Batch, build_dataloader, collate
from framework.data.pipeline_dataset import PipelineDataset
from framework.data.scan import BadImage
from framework.data.transforms.mosaic import Mosaic
from framework.data.transforms.pipeline import Pipeline
from framework.evaluation.build import build_evaluator, ground_truth
from tests.data.bad_files import copy_shapes, cut_tail, write_garbage

TO_FLOAT = v2.ToDtype(torch.float32, scale=True)


@pytest.fixture
def root(shapes_root: Path, tmp_path: Path) -> Path:
    return copy_shapes(shapes_root, tmp_path / "shapes")


def damaged_val(root: Path, *indices: int, transforms=None) -> ShapesDataset:
    ds = ShapesDataset(str(root), "val", transforms=transforms)
    for i in indices:
        write_garbage(ds.image_path(i))
    return ds


# ------------------------------------------------------------------------------------------------ the policy
def test_on_bad_image_values() -> None:
    assert check_on_bad_image("skip") == "skip" and check_on_bad_image("repair") == "repair"
    with pytest.raises(DatasetError, match=r"dataset.on_bad_image='ignore' is not a choice.*=error.*=skip.*=repair"):
        check_on_bad_image("ignore")
    with pytest.raises(DatasetError, match="dataset.on_bad_image"):
        PipelineDataset([], None, on_bad_image="drop")


def test_error_lists_paths_reasons_count_and_fixes(root: Path) -> None:
    ds = damaged_val(root, 1, 4)
    with pytest.raises(DatasetError) as info:
        screen_dataset(ds, "val")
    msg = str(info.value)
    assert msg.startswith("2 of the 8 val images cannot be used")
    assert f"{ds.image_path(1)}: it is not an image file" in msg and str(ds.image_path(4)) in msg
    assert "tools/check_dataset.py" in msg and "dataset.on_bad_image=skip" in msg


def test_error_lists_the_first_ten(root: Path) -> None:
    ds = ShapesDataset(str(root), "val")
    bad = [BadImage(i % 8, Path(f"/data/img{i}.jpg"), "it is truncated") for i in range(13)]
    with pytest.raises(DatasetError) as info:
        screen_dataset(ds, "val", scanner=lambda _: bad)
    msg = str(info.value)
    assert "/data/img9.jpg" in msg and "/data/img10.jpg" not in msg and "… and 3 more" in msg


def test_clean_or_unscanned_dataset_is_returned_as_it_is(root: Path) -> None:
    ds = damaged_val(root, 1)
    assert screen_dataset(ds, "val", scan=False) is ds
    clean = ShapesDataset(str(root), "train")
    assert screen_dataset(clean, "train", on_bad_image="skip") is clean
    assert isinstance(screen_dataset(clean, "val", on_bad_image="skip", substitute=True), SkipImages)


def test_skip_leaves_the_images_out_and_keeps_the_metadata(root: Path, caplog) -> None:
    ds = damaged_val(root, 2, 5)
    with caplog.at_level(logging.WARNING, logger="framework"):
        kept = screen_dataset(ds, "val", on_bad_image="skip")
    assert "Leaving out 2 of the 8 val images" in caplog.text and str(ds.image_path(5)) in caplog.text
    assert isinstance(kept, SkipImages) and len(kept) == 6 and kept.indices == [0, 1, 3, 4, 6, 7]
    assert [b.index for b in kept.excluded_images] == [2, 5]
    assert kept.image_path(2) == ds.image_path(3) and kept.get_image_info(5) == ds.get_image_info(7)
    assert kept.ids == [ds.ids[i] for i in kept.indices]
    assert kept[2][1]["image_id"] == ds.ids[3]
    assert kept.classes == ds.classes and kept.cat_id_to_label == ds.cat_id_to_label
    assert sorted(kept.coco.imgs) == sorted(kept.ids) and len(ds.coco.imgs) == 8  # the original is untouched
    assert all(a["image_id"] in kept.ids for a in kept.coco.dataset["annotations"])
    again = pickle.loads(pickle.dumps(kept))  # as sent to loader workers
    assert len(again) == 6 and again.image_path(0) == ds.image_path(0)


def test_transforms_are_set_on_the_wrapped_dataset(root: Path) -> None:
    """The runner decodes validation images without transforms by setting `dataset.transforms = None`."""
    ds = damaged_val(root, 0, transforms=TO_FLOAT)
    kept = screen_dataset(ds, "val", on_bad_image="skip")
    assert kept.transforms is TO_FLOAT
    kept.transforms = None
    assert ds.transforms is None and kept[0][0].dtype == torch.uint8


# ------------------------------------------------------------------------------------------------ evaluation
def perfect_detections(gt: list[dict]) -> tuple[list[int], list[dict]]:
    ids = [g["image_id"] for g in gt]
    dets = [{"boxes": torch.as_tensor(g["boxes"]), "scores": torch.ones(len(g["labels"])),
             "labels": torch.as_tensor(g["labels"])} for g in gt]
    return ids, dets


@pytest.mark.parametrize("metric, name", [("coco", "bbox/mAP"), ("voc07", "voc_mAP")])
def test_images_left_out_of_the_val_set_are_not_counted_as_misses(root: Path, metric: str, name: str) -> None:
    ds = damaged_val(root, 3)
    kept = screen_dataset(ds, "val", on_bad_image="skip")
    gt = ground_truth(kept)
    assert [g["image_id"] for g in gt] == kept.ids and ds.ids[3] not in kept.ids
    evaluator = build_evaluator(kept, metric)
    evaluator.process(*perfect_detections(gt))
    assert evaluator.evaluate()[name] == pytest.approx(1.0)


def test_voc_images_left_out_are_not_in_the_ground_truth(shapes_voc_root: Path, tmp_path: Path) -> None:
    """VOC's ids are file stems, so the ground truth is read from the (restricted) COCO index."""
    root = copy_shapes(shapes_voc_root, tmp_path / "VOCdevkit")
    ds = VOCDetection(str(root), years="2007", image_set="test", classes=None)
    write_garbage(ds.image_path(1))
    kept = screen_dataset(ds, "val", on_bad_image="skip")
    gt = ground_truth(kept)
    assert len(gt) == len(ds) - 1 and ds.image_id(1) not in {g["image_id"] for g in gt}
    assert kept.image_id(1) == ds.image_id(2) and kept.get_annotation(1)["image_id"] == ds.image_id(2)
    evaluator = build_evaluator(kept, "voc07")
    evaluator.process(*perfect_detections(gt))
    assert evaluator.evaluate()["voc_mAP"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ at load time
def test_a_failing_image_is_replaced_by_the_next(root: Path) -> None:
    ds = damaged_val(root, 3, 4)
    skipped: list[str] = []
    sample = load_substituting(ds.__getitem__, 3, len(ds), skipped)
    assert sample[1]["image_id"] == ds.ids[5] and skipped == [str(ds.image_path(3)), str(ds.image_path(4))]
    assert load_substituting(ds.__getitem__, 7, len(ds), [])[1]["image_id"] == ds.ids[7]


def test_a_dataset_of_bad_images_gives_up(root: Path) -> None:
    ds = damaged_val(root, *range(8))
    with pytest.raises(DatasetError, match="8 images in a row could not be loaded"):
        load_substituting(ds.__getitem__, 0, len(ds), [])


def test_val_set_replaces_images_failing_at_load_time(root: Path, caplog) -> None:
    ds = damaged_val(root, 6)
    val = screen_dataset(ds, "val", scan=False, on_bad_image="skip", substitute=True)
    with caplog.at_level(logging.WARNING, logger="framework"):
        image, target = val[6]
    assert target["image_id"] == ds.ids[7] and target[SKIPPED_IMAGES] == [str(ds.image_path(6))]
    assert f"{ds.image_path(6)} could not be loaded: evaluating without it" in caplog.text


def test_pipeline_dataset_skips_and_marks_or_raises(root: Path) -> None:
    ds = damaged_val(root, 2)
    skipping = PipelineDataset(ds, Pipeline([TO_FLOAT]), on_bad_image="skip")
    image, target = skipping[2]
    assert target["image_id"] == ds.ids[3] and target[SKIPPED_IMAGES] == [str(ds.image_path(2))]
    assert SKIPPED_IMAGES not in skipping[1][1]
    batch = collate([skipping[1], skipping[2]])
    assert batch.skipped_images == [str(ds.image_path(2))] and all(SKIPPED_IMAGES not in t for t in batch.targets)
    assert batch.to("cpu").skipped_images == batch.skipped_images
    with pytest.raises(BadImageError) as info:
        PipelineDataset(ds, Pipeline([TO_FLOAT]))[2]
    assert info.value.path == ds.image_path(2)


def test_mosaic_partners_are_replaced_too(root: Path) -> None:
    ds = ShapesDataset(str(root), "train")
    bad_id, bad_path = ds.ids[5], str(ds.image_path(5))
    cut_tail(ds.image_path(5))
    mosaic = PipelineDataset(ds, Pipeline([Mosaic(size=64, prob=1.0), TO_FLOAT]), on_bad_image="skip")
    torch.manual_seed(0)
    samples = [mosaic[i] for i in range(len(ds))]
    assert all(bad_id not in t["source_ids"] for _, t in samples)
    marked = [i for i, (_, t) in enumerate(samples) if bad_path in t.get(SKIPPED_IMAGES, [])]
    assert 5 in marked and len(marked) > 1  # its own index and, drawn as a partner, in others


def test_worker_errors_and_skips_reach_the_main_process(root: Path) -> None:
    ds = damaged_val(root, 1)
    loader = build_dataloader(PipelineDataset(ds, Pipeline([TO_FLOAT])), batch_size=4, num_workers=1)
    with pytest.raises(BadImageError) as info:  # torch would turn it into a RuntimeError with a traceback
        list(loader)
    assert info.value.path == ds.image_path(1) and info.value.reason.startswith("it cannot be decoded (image_id=")
    assert str(info.value).startswith(f"Bad image {ds.image_path(1)}: it cannot be decoded")
    assert "Traceback" not in str(info.value) and "dataset.on_bad_image=skip" in str(info.value)

    loader = build_dataloader(PipelineDataset(ds, Pipeline([TO_FLOAT]), on_bad_image="skip"), batch_size=4,
                              num_workers=1)
    batches: list[Batch] = list(loader)
    assert [b.skipped_images for b in batches] == [[str(ds.image_path(1))], []]
    assert loader.pop_skipped_images() == [str(ds.image_path(1))] and loader.pop_skipped_images() == []


EXIT_AFTER_WORKER_ERROR = """
import sys, torch
from framework.data.errors import BadImageError
from framework.data.loader import build_dataloader

class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise BadImageError("/data/5.jpg", "it is truncated")
        return torch.zeros(3, 8, 8), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}

loader = build_dataloader(Data(), batch_size=2, num_workers=2)
try:
    for batch in loader:
        pass
except BadImageError as exc:  # as tools/*.py do: report, then exit while the exception is still referenced
    print(exc.path)
    sys.exit(2)
"""


def test_the_process_exits_after_a_worker_error(repo_root: Path) -> None:
    """Workers ignore SIGTERM, which multiprocessing sends them at exit; this used to wait forever."""
    proc = subprocess.run([sys.executable, "-c", EXIT_AFTER_WORKER_ERROR], cwd=repo_root, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout.strip() == "/data/5.jpg", proc.stderr[-2000:]


def test_bad_image_error_round_trips() -> None:
    err = BadImageError("/data/a: b.jpg", "it is truncated (x: y)")
    assert pickle.loads(pickle.dumps(err)).path == Path("/data/a: b.jpg")
    assert BadImageError("no traceback here").reason == "no traceback here"


class _Loader:
    def __init__(self, dataset, skipped, repaired=()):
        self.dataset, self._skipped, self._repaired = dataset, skipped, list(repaired)

    def pop_skipped_images(self):
        return self._skipped

    def pop_repaired_images(self):
        return self._repaired


def test_epoch_report(root: Path) -> None:
    ds = damaged_val(root, 0)
    kept = PipelineDataset(screen_dataset(ds, "val", on_bad_image="skip"), None)
    assert skipped_images_report(3, _Loader(ds, [])) is None
    assert skipped_images_report(3, _Loader(kept, [])) == "Epoch 3: 1 bad image skipped (1 found by the scan)"
    two_ranks = skipped_images_report(3, _Loader(kept, ["/b.jpg"]), gather=lambda x: [x, (["/a.jpg", "/b.jpg"], [])])
    assert two_ranks == "Epoch 3: 3 bad images skipped (1 found by the scan, 2 at load time: /a.jpg, /b.jpg)"

    repairing = PipelineDataset(RepairImages(ds, [BadImage(4, ds.image_path(4), "it is truncated", True)]), None,
                                on_bad_image="repair")
    at_load = [str(ds.image_path(4)), "/c.jpg"]  # the scan's file is repaired at every load: counted once
    assert skipped_images_report(3, _Loader(repairing, [], at_load)) == (
        "Epoch 3: 2 bad images repaired (1 found by the scan, 1 at load time: /c.jpg)")


# ------------------------------------------------------------------------------------------------ repair
def truncated_val(root: Path, index: int) -> tuple[ShapesDataset, torch.Tensor]:
    """The val set with image `index` cut short (a download interrupted at 60 %), and that image as it was."""
    ds = ShapesDataset(str(root), "val")
    whole = ds[index][0]
    cut_tail(ds.image_path(index), 0.6)
    return ds, whole


def test_each_policy_on_a_truncated_jpeg(root: Path, caplog, monkeypatch) -> None:
    ds, whole = truncated_val(root, 3)
    path = ds.image_path(3)
    with pytest.raises(DatasetError) as info:
        screen_dataset(ds, "val")
    assert f"{path}: it is truncated (no JPEG end marker): image file is truncated" in str(info.value)
    assert "[repairable]" in str(info.value) and "1 of them ([repairable]) is a JPEG cut short: " \
        "dataset.on_bad_image=repair decodes" in str(info.value)
    with pytest.raises(BadImageError, match="it cannot be decoded"):
        PipelineDataset(ds, None)[3]
    assert screen_dataset(ds, "val", on_bad_image="skip").indices == [0, 1, 2, 4, 5, 6, 7]

    with caplog.at_level(logging.WARNING, logger="framework"):
        kept = screen_dataset(ds, "val", on_bad_image="repair")
    assert (f"1 val image repaired (dataset.on_bad_image=repair), decoded as far as the data goes:\n  {path}: it is "
            "truncated") in caplog.text
    assert isinstance(kept, RepairImages) and len(kept) == 8 and [b.index for b in kept.repaired_images] == [3]
    assert kept.ids == ds.ids and kept.coco is ds.coco
    loading = PipelineDataset(kept, None, on_bad_image="repair")
    image, target = loading[3]
    assert image.shape == whole.shape and target["image_id"] == ds.ids[3] and target[REPAIRED_IMAGES] == [str(path)]
    top = whole.shape[1] // 8  # the top rows are in the data that is left
    assert (image[:, :top].float() - whole[:, :top].float()).abs().mean() < 1.0

    def no_repair(path):
        raise AssertionError(f"{path} is sound: the fast decoder reads it")

    monkeypatch.setattr(bad_images, "decode_truncated", no_repair)
    assert REPAIRED_IMAGES not in loading[2][1]


def test_repair_stops_on_files_it_cannot_repair(root: Path) -> None:
    ds, _ = truncated_val(root, 3)
    garbage = write_garbage(ds.image_path(5))
    with pytest.raises(DatasetError) as info:
        screen_dataset(ds, "val", on_bad_image="repair")
    msg = str(info.value)
    assert msg.startswith("1 of the 8 val images cannot be used, and dataset.on_bad_image=repair cannot repair them:"
                          f"\n  {garbage}: it is not an image file")
    assert str(ds.image_path(3)) not in msg and "set dataset.on_bad_image=skip, which drops them" in msg
    with pytest.raises(BadImageError, match="cannot repair it") as info:  # unscanned: found at load time
        PipelineDataset(ds, None, on_bad_image="repair")[5]
    assert info.value.path == garbage and "dataset.on_bad_image=skip" in str(info.value)


def test_val_set_repairs_images_failing_at_load_time(root: Path, caplog) -> None:
    ds, whole = truncated_val(root, 6)
    val = screen_dataset(ds, "val", scan=False, on_bad_image="repair", substitute=True)
    with caplog.at_level(logging.WARNING, logger="framework"):
        image, target = val[6]
    assert image.shape == whole.shape and target[REPAIRED_IMAGES] == [str(ds.image_path(6))]
    assert f"{ds.image_path(6)} could not be decoded: evaluating on what it holds" in caplog.text
    caplog.clear()
    scanned = screen_dataset(ds, "val", on_bad_image="repair", substitute=True)
    assert scanned[6][1][REPAIRED_IMAGES] == [str(ds.image_path(6))] and "could not be decoded" not in caplog.text


def test_repairs_in_workers_and_mosaic_partners_reach_the_batch(root: Path) -> None:
    ds, _ = truncated_val(root, 1)
    loader = build_dataloader(PipelineDataset(ds, Pipeline([TO_FLOAT]), on_bad_image="repair"), batch_size=4,
                              num_workers=1)
    assert [b.repaired_images for b in loader] == [[str(ds.image_path(1))], []]
    assert skipped_images_report(2, loader) == f"Epoch 2: 1 bad image repaired (1 at load time: {ds.image_path(1)})"
    assert loader.pop_repaired_images() == [] and loader.pop_skipped_images() == []

    mosaic = PipelineDataset(ds, Pipeline([Mosaic(size=64, prob=1.0), TO_FLOAT]), on_bad_image="repair")
    torch.manual_seed(0)
    marked = [i for i in range(len(ds)) if str(ds.image_path(1)) in mosaic[i][1].get(REPAIRED_IMAGES, [])]
    assert 1 in marked and len(marked) > 1  # its own index and, drawn as a partner, in others
