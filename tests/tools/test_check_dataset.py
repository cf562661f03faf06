"""tools/check_dataset.py: lists the bad image files of each split and exits 1, or says all are usable and exits 0."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.data.bad_files import cut_tail, damaged_copy, image_file


def check(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/check_dataset.py", *args], cwd=repo_root, capture_output=True,
                          text=True, timeout=300)


def test_lists_bad_files_and_exits_1(repo_root: Path, shapes_root: Path, tmp_path: Path) -> None:
    root, (jpg, png) = damaged_copy(shapes_root, tmp_path / "shapes")
    cut = cut_tail(image_file(root, "train", 5))  # a download interrupted: repairable
    proc = check(repo_root, f"dataset.root={root}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "train: 10 images, 3 bad (1 repairable)" in proc.stdout and "val: 4 images, all usable" in proc.stdout
    assert f"{jpg}: it is not an image file (PIL cannot identify it)\n" in proc.stdout
    assert f"{png}: it is truncated or corrupt" in proc.stdout
    assert f"{cut}: it is truncated (no JPEG end marker)" in proc.stdout
    assert "[repairable with dataset.on_bad_image=repair]" in proc.stdout.split(str(cut))[1].splitlines()[0]
    assert proc.stdout.count("[repairable") == 1 and "3 bad image file(s)" in proc.stdout
    assert "1 of them is a JPEG cut short (the others would still stop a run): dataset.on_bad_image=repair" \
        in proc.stdout and "Traceback" not in proc.stderr


def test_clean_dataset_exits_0(repo_root: Path, shapes_root: Path) -> None:
    proc = check(repo_root, f"dataset.root={shapes_root}", "split=val", "decode=true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "val: 8 images, all usable" in proc.stdout and "train:" not in proc.stdout
    assert f"Every image file of dataset 'shapes' ({shapes_root}) is usable." in proc.stdout

