"""tools/export.py end to end: a tiny trained checkpoint becomes an .onnx file whose onnxruntime detections match
PyTorch's, for other batch and image sizes too; user mistakes exit with code 2 and one paragraph."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from framework.inference import Predictor, find_images, load_image


@pytest.fixture(scope="module")
def runs(repo_root, trained_run, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """The export and two mistaken command lines, started together: the mistakes spend their time importing torch,
    the export in torch.export's single-threaded tracing."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    tmp = tmp_path_factory.mktemp("export")
    # a copy, so the .onnx written next to it stays out of the run folder the other tool tests share
    ckpt = tmp / "checkpoints" / "last.pth"
    ckpt.parent.mkdir()
    shutil.copy(trained_run / "checkpoints" / "last.pth", ckpt)
    # after 6 steps the best scores are ~0.05: a few dozen boxes per image above 0.03. A model override (baked
    # into the graph) is merged into the checkpoint's config, as in tools/test.py.
    jobs = {"export": [f"checkpoint={ckpt}", "input_size=[128,128]", "model.head.score_thr=0.03"],
            "missing": [f"checkpoint={tmp / 'missing' / 'nope.pth'}"],
            "format": [f"checkpoint={ckpt}", "format=tensorrt"]}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = {name: subprocess.Popen([sys.executable, "tools/export.py", *args], cwd=repo_root, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in jobs.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        out[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), ckpt)
    return out


def test_export_writes_the_onnx_file_and_checks_it(runs):
    import onnx

    proc, ckpt = runs["export"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    path = ckpt.with_suffix(".onnx")  # default: next to the checkpoint
    assert path.is_file() and f"Exported {path}" in proc.stdout
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.onnx", "last.pth"]  # no temporary file left
    assert "images [batch, 3, 32*height, 32*width] float32; image_sizes [batch, 2] int64" in proc.stdout
    assert "num_detections [batch] int64" in proc.stdout
    found = re.search(r"ONNX check passed on 4 image\(s\): (\d+) detections compared; max box difference (\S+) px",
                      proc.stdout)
    assert found and int(found[1]) > 0 and float(found[2]) <= 1e-3, proc.stdout
    assert re.search(r"latency per image: onnxruntime [\d.]+ ms, PyTorch [\d.]+ ms", proc.stdout)
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert json.loads(meta["framework.classes"]) == ["circle", "square", "triangle", "cross"]
    assert float(meta["framework.score_thr"]) == 0.03 and meta["framework.dynamic"] == "true"


def test_exported_file_takes_other_batch_and_image_sizes(runs, shapes_root):
    from framework.export import verify_onnx

    ckpt = runs["export"][1]
    detector = Predictor.from_checkpoint(ckpt, overrides={"model": {"head": {"score_thr": 0.03}}})
    images = [detector.preprocess(load_image(p))[0] for p in find_images(shapes_root / "images" / "val")[:3]]
    images.append(torch.nn.functional.interpolate(images[0][None], size=(150, 200), mode="bilinear")[0])
    report = verify_onnx(ckpt.with_suffix(".onnx"), detector.model, images, batch_size=2)  # traced at 128x128
    assert report.ok and report.compared > 0, report.summary()


def test_missing_checkpoint_is_a_clear_error(runs):
    proc, ckpt = runs["missing"]
    assert proc.returncode == 2 and "Checkpoint not found" in proc.stderr and "Traceback" not in proc.stderr
    assert not (ckpt.parent.parent / "missing").exists()  # nothing created for it


def test_unsupported_format_lists_the_formats(runs):
    proc, _ = runs["format"]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "format=tensorrt is not supported; supported formats: onnx" in proc.stderr
