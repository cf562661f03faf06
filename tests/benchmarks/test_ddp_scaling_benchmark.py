"""Smoke test of benchmarks/ddp_scaling.py: torchrun with 1 and 2 CPU processes runs and the JSON is written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ddp_scaling_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ddp_scaling.py"), "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["settings"]["quick"] and [r["procs"] for r in data["results"]] == [1, 2]
    one, two = data["results"]
    assert two["global_batch"] == 2 * one["global_batch"] and one["speedup"] == 1.0
    assert all(r["images_per_s"] > 0 and 0 <= r["data_share"] <= 1 and r["iterations"] > 0 for r in data["results"])
    assert "| 2 | 8 |" in proc.stdout
