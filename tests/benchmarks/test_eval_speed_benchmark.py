"""Smoke test of benchmarks/eval_speed.py: it runs standalone, times each backend and writes the JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from framework.evaluation.coco import COCO_METRIC_NAMES

REPO = Path(__file__).resolve().parents[2]
try:
    import faster_coco_eval  # noqa: F401

    HAS_FASTER = True
except ImportError:
    HAS_FASTER = False


def test_eval_speed_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "eval_speed.py"), "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["settings"]["quick"] and data["settings"]["images"] == 200 and data["settings"]["repeats"] == 1
    assert {"platform", "cpu_count", "pycocotools", "numpy", "torch"} <= data["machine"].keys()
    assert data["data"]["detections"] == 200 * 100 and data["data"]["crowd"] > 0
    assert all(n > 0 for n in data["data"]["small_medium_large"])

    expected = ["pycocotools", "faster_coco_eval"] if HAS_FASTER else ["pycocotools"]
    assert list(data["results"]) == expected
    for r in data["results"].values():
        assert len(r["runs"]) == 1
        assert 0 < r["evaluate_s"] <= r["total_s"]
        assert list(r["metrics"]) == list(COCO_METRIC_NAMES) and 0 < r["metrics"]["bbox/mAP"] < 1
    assert "| backend | process + evaluate | evaluate |" in proc.stdout
    assert "| pycocotools |" in proc.stdout

    if not HAS_FASTER:  # the faster part is skipped, and said so
        assert "faster_coco_eval" in data["settings"]["skipped"] and data["ratio_pycocotools_over_faster"] is None
        return
    assert data["identical_metrics"] is True
    assert data["results"]["pycocotools"]["metrics"] == data["results"]["faster_coco_eval"]["metrics"]
    assert set(data["ratio_pycocotools_over_faster"]) == {"total_s", "evaluate_s"}
    assert all(v > 0 for v in data["ratio_pycocotools_over_faster"].values())
    assert "| pycocotools / faster_coco_eval |" in proc.stdout
    assert "Same 12 numbers from both backends: yes" in proc.stdout
