"""Bad image files as a user meets them: tools/train.py stops before training and names them (saying which
dataset.on_bad_image=repair could use), or, with dataset.on_bad_image=skip, trains without them and says so at the
end of the epoch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.bad_files import cut_tail, damaged_copy, image_file

from .test_train_and_test import FAST, run


@pytest.fixture(scope="module")
def damaged_root(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """10 train images (a JPEG that is no image and a PNG cut short among them) and 4 val images."""
    return damaged_copy(shapes_root, tmp_path_factory.mktemp("damaged") / "shapes")


def test_train_stops_before_training_and_names_the_files(repo_root: Path, shapes_root: Path, tmp_path: Path) -> None:
    root, bad = damaged_copy(shapes_root, tmp_path / "shapes")
    bad.append(cut_tail(image_file(root, "train", 5)))  # and a JPEG cut short, which repair could use
    proc = subprocess.run([sys.executable, "tools/train.py", *FAST, "trainer.max_epochs=1", f"dataset.root={root}",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=repo_root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "3 of the 10 train images cannot be used" in proc.stderr
    assert f"{bad[0]}: it is not an image file" in proc.stderr and f"{bad[1]}: it is truncated" in proc.stderr
    assert f"{bad[2]}: it is truncated (no JPEG end marker)" in proc.stderr and "[repairable]" in proc.stderr
    assert "dataset.on_bad_image=skip" in proc.stderr and "tools/check_dataset.py" in proc.stderr
    assert "1 of them ([repairable]) is a JPEG cut short: dataset.on_bad_image=repair" in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_skips_them_and_reports_the_count(repo_root: Path, damaged_root, tmp_path: Path) -> None:
    root, bad = damaged_root
    proc = run(repo_root, "tools/train.py", *FAST, "trainer.max_epochs=1", "dataset.on_bad_image=skip",
               "evaluation.plots=false", "trainer.vis_images=0", f"dataset.root={root}",
               f"hydra.run.dir={tmp_path / 'run'}")
    out = proc.stdout + proc.stderr
    assert "Leaving out 2 of the 10 train images (dataset.on_bad_image=skip)" in out and str(bad[1]) in out
    assert "Epoch 1: 2 bad images skipped (2 found by the scan)" in out
    assert (tmp_path / "run" / "checkpoints" / "last.pth").is_file()
