"""tools/browse_dataset.py: one grid PNG of augmented samples with their boxes (and masks) drawn, and clear errors."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import read_image


def _tool(repo_root: Path):
    """tools/browse_dataset.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("browse_dataset", repo_root / "tools" / "browse_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _palette(repo_root: Path) -> tuple[list[tuple[int, int, int]], int]:
    """PALETTE and PAD of the tool."""
    module = _tool(repo_root)
    return module.PALETTE, module.PAD


@pytest.fixture(scope="module")
def runs(repo_root, shapes_root, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """The four runs, started together: most of each one's time is importing torch."""
    tmp = tmp_path_factory.mktemp("browse")
    common = [f"dataset.root={shapes_root}", "dataset.num_workers=0", f"hydra.run.dir={tmp}"]
    jobs = {"yolo_style": (["pipeline=yolo_style", "num=6", f"out={tmp / 'grid.png'}"], tmp / "grid.png"),
            "basic": (["pipeline=basic", "num=5", "columns=2"], tmp / "basic_train_e0.png"),  # default out
            "num0": (["num=0"], tmp / "none.png"),
            # the first two samples of the yolo_style run (same seed), now with their masks
            "masks": (["pipeline=yolo_style", "+dataset.train.with_masks=true", "num=2", f"out={tmp / 'masks.png'}"],
                      tmp / "masks.png")}
    procs = {name: subprocess.Popen([sys.executable, "tools/browse_dataset.py", *args, *common], cwd=repo_root,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (args, _) in jobs.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), jobs[name][1])
    return out


@pytest.mark.parametrize("name,rows,cols,num", [("yolo_style", 2, 3, 6), ("basic", 3, 2, 5)])
def test_grid_png(runs, repo_root, name, rows, cols, num):
    proc, png = runs[name]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Wrote {png}" in proc.stdout
    m = re.search(r"\((\d+)x(\d+) tiles of (\d+)x(\d+) px\)", proc.stdout)
    assert m and (int(m[1]), int(m[2])) == (rows, cols)
    w, h = int(m[3]), int(m[4])
    if name == "yolo_style":
        assert (w, h) == (160, 160)  # dataset.img_size of the shapes config
        assert "Mosaic.prob" in proc.stdout and "mixed from images" in proc.stdout
    grid = read_image(str(png))
    palette, pad = _palette(repo_root)
    assert grid.dtype == torch.uint8 and grid.shape == (3, rows * (h + pad) + pad, cols * (w + pad) + pad)
    boxes = [int(b) for b in re.findall(r"^\[\d+\] index \d+: (\d+) box", proc.stdout, flags=re.M)]
    assert len(boxes) == num and sum(boxes) > 0
    colours = torch.tensor(palette[:4], dtype=torch.uint8)  # the 4 shapes classes
    for n, count in enumerate(boxes):  # each sample with boxes shows box/label pixels in its class colours
        y, x = pad + (n // cols) * (h + pad), pad + (n % cols) * (w + pad)
        tile = grid[:, y:y + h, x:x + w].permute(1, 2, 0).reshape(-1, 1, 3)
        drawn = int((tile == colours).all(-1).any(-1).sum())
        assert drawn >= 20 * min(count, 1), (n, count, drawn)


def test_num_zero_is_a_clear_error(runs):
    proc, png = runs["num0"]
    assert proc.returncode != 0 and not png.exists()
    assert "num must be at least 1" in proc.stderr and "Traceback" not in proc.stderr


def _tiles(png: Path, count: int, cols: int, side: int, pad: int) -> list[torch.Tensor]:
    grid = read_image(str(png))
    return [grid[:, pad + (n // cols) * (side + pad):][:, :side, pad + (n % cols) * (side + pad):][:, :, :side]
            for n in range(count)]


def test_masks_are_drawn_on_request(runs, repo_root):
    proc, png = runs["masks"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = re.findall(r"^\[\d+\] index \d+: (\d+) box\(es\), (\d+) mask\(s\)", proc.stdout, flags=re.M)
    assert len(counts) == 2 and all(b == m for b, m in counts) and sum(int(b) for b, _ in counts) > 0
    plain_proc, plain_png = runs["yolo_style"]
    assert "mask(s)" not in plain_proc.stdout  # a box model's data has none
    palette, pad = _palette(repo_root)
    colours = torch.tensor(palette[:4], dtype=torch.uint8)
    for masked, plain, (boxes, _) in zip(_tiles(png, 2, 2, 160, pad), _tiles(plain_png, 2, 3, 160, pad), counts):
        changed = (masked != plain).any(0)  # the same sample (same seed, masks change no random draw), now filled
        assert changed.sum() >= 100 * min(int(boxes), 1), int(changed.sum())
        outline = (masked.permute(1, 2, 0)[changed].reshape(-1, 1, 3) == colours).all(-1).any(-1)
        assert outline.sum() >= 20 * min(int(boxes), 1)  # outlines in the class colours


def test_a_mask_model_browses_with_masks(repo_root, shapes_root):
    from hydra import compose, initialize_config_dir

    from framework.config import CONFIG_DIR

    tool = _tool(repo_root)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for model, expected in (("mask_rcnn_r50_fpn", True), ("retinanet_r50_fpn", False)):
            cfg = compose("browse", [f"model={model}", f"dataset.root={shapes_root}"])
            image, target = tool.raw_dataset(cfg)[0]
            assert ("masks" in target) is expected, model
            if expected:
                assert target["masks"].shape == (len(target["boxes"]), *image.shape[-2:])
