"""Building a run with bad image files: the validation set is scanned for evaluation-only runs (tools/test.py), images
left out are not evaluated, and images failing only at load time (no scan) are replaced and counted per epoch."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from framework.data.errors import DatasetError
from tests.data.bad_files import cut_tail, damaged_copy, image_file, write_garbage

from .test_trainer import make_evaluation, make_trainer


@pytest.fixture
def root(shapes_root: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    return damaged_copy(shapes_root, tmp_path / "shapes")


def test_evaluation_scans_the_val_set_and_leaves_bad_images_out(root, tmp_path: Path) -> None:
    root, _ = root
    bad = write_garbage(image_file(root, "val", 1))
    with pytest.raises(DatasetError, match=f"1 of the 4 val images cannot be used:\n  {bad}: it is not an image"):
        make_evaluation(root, tmp_path / "a")
    model, evaluation = make_evaluation(root, tmp_path / "b", "dataset.on_bad_image=skip")
    dataset = evaluation.loader.dataset
    assert len(dataset) == 3 and dataset.excluded_images[0].path == bad
    evaluation.run(model)
    assert sorted(evaluation.evaluator.image_ids) == sorted(dataset.ids) and 2 not in dataset.ids  # image id 2: index 1


def test_evaluation_repairs_a_truncated_val_image(root, tmp_path: Path) -> None:
    root, _ = root
    cut = cut_tail(image_file(root, "val", 2))
    model, evaluation = make_evaluation(root, tmp_path / "run", "dataset.on_bad_image=repair")
    dataset = evaluation.loader.dataset
    assert len(dataset) == 4 and [b.path for b in dataset.repaired_images] == [cut]
    evaluation.run(model)
    assert sorted(evaluation.evaluator.image_ids) == [1, 2, 3, 4]


def test_images_failing_at_load_time_are_replaced_and_counted(root, tmp_path: Path, caplog) -> None:
    root, bad = root
    trainer = make_trainer(root, tmp_path / "run", "dataset.scan_images=false", "dataset.on_bad_image=skip",
                         "dataset.num_workers=1", "trainer.max_epochs=1")
    with caplog.at_level(logging.INFO, logger="framework"):
        trainer.fit()
    paths = ", ".join(sorted(str(p) for p in bad))
    assert f"Epoch 1: 2 bad images skipped (2 at load time: {paths})" in caplog.text
    assert "Checking the" not in caplog.text  # no scan
