"""tools/analyze.py: the table, the JSON report, and one-paragraph errors."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from framework.config.validation import ConfigError


@pytest.fixture(scope="module")
def runs(repo_root, tmp_path_factory) -> tuple[dict[str, subprocess.CompletedProcess], Path]:
    """The runs, started together: most of each one's time is importing torch."""
    tmp = tmp_path_factory.mktemp("analyze")
    jobs = {"ok": ["model=resnet50_fpn", "model/backbone=resnet18", "input_size=[128,128]", "latency_runs=2",
                   f"hydra.run.dir={tmp / 'run'}"],
            "bad_model": ["model=resnet50_fnp", f"hydra.run.dir={tmp / 'bad'}"]}
    procs = {name: subprocess.Popen([sys.executable, "tools/analyze.py", *args], cwd=repo_root,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in jobs.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out, tmp


def test_table_and_json(runs):
    procs, tmp = runs
    proc = procs["ok"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    for line in ("backbone   ResNet", "neck       FPN", "head       RetinaHead", "total", "GFLOPs",
                 "receptive field", "Latency, batch 1, fp32, 2 runs"):
        assert line in text
    path = tmp / "run" / "analysis.json"
    assert f"Wrote {path}" in text
    report = json.loads(path.read_text())
    assert report["input_size"] == [128, 128] and report["config"]["model/backbone"] == "resnet18"
    parts = ("backbone", "neck", "head")
    assert sum(report["params"][c]["total"] for c in parts) == report["params"]["total"]["total"]
    assert report["params"]["backbone"]["total"] == 11_176_512  # ResNet-18 without its fc (11,689,512 − 513,000)
    assert all(report["flops"][c]["flops"] > 0 for c in parts)
    assert sum(report["flops"][c]["flops"] for c in parts) == report["flops"]["total"]["flops"]
    # ResNet-18 (two 3x3 per block): stem 11 at jump 4; layer1 11 + 4·8 = 43; C3 43 + 8 + 3·16 = 99;
    # C4 99 + 16 + 3·32 = 211; C5 211 + 32 + 3·64 = 435
    assert [(r["index"], r["stride"], r["receptive_field"]) for r in report["receptive_fields"]] == [
        (2, 8, 99), (3, 16, 211), (4, 32, 435)]
    assert report["latency"]["runs"] == 2 and report["latency"]["mean_ms"] > 0


def test_unknown_model_is_one_paragraph(runs):
    proc = runs[0]["bad_model"]
    assert proc.returncode == 2
    assert "'resnet50_fnp' is not an option of the config group 'model'" in proc.stderr
    assert "resnet50_fpn" in proc.stderr and "Traceback" not in proc.stderr


def test_settings_are_checked(repo_root):
    """Values the schema's types let through but that make no sense are ConfigErrors (one paragraph, exit 2)."""
    spec = importlib.util.spec_from_file_location("analyze", repo_root / "tools" / "analyze.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    good = {"input_size": [128, 160], "batch_size": 1, "latency_runs": 0, "trainer": {"precision": "bf16"}}
    tool.check(OmegaConf.create(good))
    for bad, message in (({"input_size": [128]}, "input_size must be [height, width]"),
                         ({"batch_size": 0}, "batch_size must be at least 1"),
                         ({"trainer": {"precision": "fp8"}}, "trainer.precision=fp8 is not one of")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            tool.check(OmegaConf.merge(good, bad))
