"""Smoke test of benchmarks/worker_memory.py: it runs standalone, measures both storage modes and writes the JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").is_file(), reason="reads Linux's /proc/<pid>/smaps_rollup")
def test_worker_memory_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "worker_memory.py"), "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    settings = data["settings"]
    assert settings["quick"] and settings["annotations"] == 5000 and settings["images"] == 1000
    assert settings["start_method"] == "fork" and settings["workers"] == 4
    assert data["data"]["ann_file_mb"] > 0 and {"platform", "cpu_count", "torch"} <= data["machine"].keys()

    assert list(data["results"]) == ["dicts", "arrays"]
    for r in data["results"].values():
        assert r["samples"] == 1000 and r["boxes"] == 5000  # every synthetic box is inside its image
        assert [p["role"] for p in r["processes"]] == ["main", "worker 0", "worker 1", "worker 2", "worker 3"]
        for p in r["processes"]:
            assert 0 < p["uss_mb"] <= p["pss_mb"] <= p["rss_mb"]
        for key in ("rss_mb", "pss_mb", "uss_mb"):
            assert r["total"][key] == pytest.approx(sum(p[key] for p in r["processes"]))
        assert r["build_s"] > 0 and r["epoch_s"] > 0
    assert data["same_boxes"] is True
    assert set(data["ratio_dicts_over_arrays"]) == {"rss_mb", "pss_mb", "uss_mb", "workers_uss_mb"}
    assert "| storage | RSS | PSS | USS | USS of the workers | build s | epoch s |" in proc.stdout
    assert "| dicts |" in proc.stdout and "| arrays |" in proc.stdout
    assert "Same boxes from both modes: yes" in proc.stdout
