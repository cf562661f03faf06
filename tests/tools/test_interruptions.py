"""A crash or a signal never costs the last good checkpoint, driven as a user would: tools/train.py killed with
SIGKILL while it writes last.pth, resumed, stopped with Ctrl-C (SIGINT to the whole process group, data-loader
workers included) mid-epoch, resumed again to the end."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from framework.engine.checkpoint import load_checkpoint

from .test_train_and_test import FAST, run

# 24 training images / batch 4 = 6 iterations per epoch; no evaluation (hence no best.pth) before epoch 3, so the
# only checkpoint writes before then are last.pth's
COMMON = [*FAST, "trainer.max_epochs=3", "trainer.eval_interval=3", "trainer.log_interval=1", "trainer.vis_images=0",
          "trainer.progress_bar=false", "evaluation.plots=false"]


def start(repo_root: Path, *args: str) -> subprocess.Popen:
    """tools/train.py in its own process group, as a shell starts a foreground job."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "tools/train.py", *args], cwd=repo_root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300.0, poll: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited early ({proc.returncode}):\n{out[-2000:]}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(poll)


def train_records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.endswith("}")]
    return [r for r in map(json.loads, lines) if r["mode"] == "train"]


def test_sigkill_while_saving_then_sigint_then_resume(repo_root, shapes_root, tmp_path):
    common = [*COMMON, f"dataset.root={shapes_root}"]
    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"

    # 1. SIGKILL the moment epoch 2's last.pth is being written (its temp file exists), with epoch 1's in place
    ckpts = first / "checkpoints"
    proc = start(repo_root, *common, f"hydra.run.dir={first}")

    def saving_over_a_previous_last() -> bool:
        return (ckpts / "last.pth").is_file() and any(p.name.startswith(".last.pth.") for p in ckpts.iterdir())

    wait_for(lambda: ckpts.is_dir() and saving_over_a_previous_last(), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    survived = load_checkpoint(ckpts / "last.pth")  # the previous file, whole
    assert (survived["epoch"], survived["iter"], survived["batch_in_epoch"]) == (1, 6, 0)

    # 2. resume it with 2 loader workers; Ctrl-C (SIGINT to the process group) once epoch 2 is under way
    proc = start(repo_root, *common, "dataset.num_workers=2", f"resume={ckpts / 'last.pth'}",
                 f"hydra.run.dir={second}")
    wait_for(lambda: any(r["iter"] >= 8 for r in train_records(second)), proc, poll=0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    log = out + err
    assert proc.returncode == 128 + signal.SIGINT, log[-3000:]
    assert "SIGINT received: finishing the current step, then saving last.pth" in log
    assert "Stopped: interrupted by SIGINT at epoch 2, iteration" in log and "resume=true" in log
    assert "Traceback" not in log and "exited unexpectedly" not in log
    stopped = load_checkpoint(second / "checkpoints" / "last.pth")
    assert stopped["epoch"] == 1 and 0 < stopped["batch_in_epoch"] < 6
    assert stopped["iter"] == 6 + stopped["batch_in_epoch"]
    assert list((second / "tb").glob("events.out.tfevents.*"))  # the TensorBoard writer was closed, not lost

    # 3. resume again: the run finishes its 3 epochs and evaluates
    proc = run(repo_root, "tools/train.py", *common, f"resume={second / 'checkpoints' / 'last.pth'}",
               f"hydra.run.dir={third}")
    assert f"epoch 1 + {stopped['batch_in_epoch']} batches" in proc.stdout + proc.stderr
    final = load_checkpoint(third / "checkpoints" / "last.pth")
    assert (final["epoch"], final["iter"], final["batch_in_epoch"]) == (3, 18, 0)
    assert (third / "checkpoints" / "best.pth").is_file()
