"""Smoke test of benchmarks/data_pipeline.py: it runs standalone, measures the loader for every preset and worker
count, and reads a data-wait share back from a real (tiny) training run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_data_pipeline_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "data_pipeline.py"), "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    presets = sorted(p.stem for p in (REPO / "configs" / "pipeline").glob("*.yaml"))
    assert data["settings"]["quick"] and sorted(data["settings"]["presets"]) == presets
    assert data["settings"]["workers"] == [0, 2]
    assert {"platform", "cpu_count", "torch", "torchvision", "device"} <= data["machine"].keys()

    got = {(r["preset"], r["images"]): r for r in data["loader"]}
    assert got.keys() == {(p, "640x480") for p in presets}
    for row in got.values():
        assert set(row["loader"]) == {"0", "2"}
        assert all(v["img_s"] > 0 and v["per_worker_img_s"] > 0 and v["images"] == 4 for v in row["loader"].values())
    assert got[("yolo_style", "640x480")]["applied"]["Mosaic.prob"] == 1.0  # full strength

    share = data["data_wait"]
    assert share["preset"] == "yolo_style" and share["workers"] == 2 and share["device"] == data["machine"]["device"]
    assert share["applied"]["Mosaic.prob"] == 1.0  # close-mosaic off in the one-epoch run
    assert share["iterations"] == 3 and share["iterations_timed"] == 2 and len(share["windows"]) == 3
    assert 0 <= share["data_share"] <= 1 and all(0 <= w["data_share"] <= 1 for w in share["windows"])
    assert 0 <= share["data_time_s"] < share["step_time_s"] and share["images_per_s"] > 0
    assert "| preset | images | W=0 | W=2 |" in proc.stdout
    assert "| data-wait share |" in proc.stdout
