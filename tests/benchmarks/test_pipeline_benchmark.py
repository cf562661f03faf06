"""Smoke test of benchmarks/pipeline.py: it runs standalone and writes a result per preset and image set."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pipeline_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pipeline.py"), "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    presets = sorted(p.stem for p in (REPO / "configs" / "pipeline").glob("*.yaml"))
    assert sorted(data["settings"]["presets"]) == presets
    assert {"platform", "cpu_count", "torch", "torchvision"} <= data["machine"].keys()
    got = {(r["preset"], r["images"]): r for r in data["results"]}
    assert got.keys() == {(p, s) for p in presets for s in ("shapes", "640x480")}
    for row in got.values():
        assert row["per_worker"]["img_s"] > 0
        assert set(row["loader"]) == {"0", "2"}
        assert all(v["img_s"] > 0 and v["per_worker_img_s"] > 0 for v in row["loader"].values())
    assert got[("basic", "640x480")]["per_worker"]["out_hw_mean"] == [480, 640]  # min_size 480 on 640×480 images
    assert "| preset | images | per-worker img/s | loader W=0 | loader W=2 |" in proc.stdout
