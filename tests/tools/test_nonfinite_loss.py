"""A NaN loss, injected as a user's own loss component would produce it: reported with the iteration, the loss
term and the batch's image ids; skipped up to trainer.skip_nonfinite times; then training stops with last.pth as it
was before the NaN."""
from __future__ import annotations

import os
import subprocess
import sys

from framework.engine.checkpoint import load_checkpoint

from .test_train_and_test import FAST

NAN_LOSS = '''
from framework.models.losses.focal import FocalLoss


class NaNOnCalls(FocalLoss):
    """Focal loss that returns NaN on the given (1-based) calls, i.e. training steps."""

    def __init__(self, nan_calls=(), **kwargs):
        super().__init__(**kwargs)
        self.nan_calls, self.calls = set(nan_calls), 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        loss = super().forward(*args, **kwargs)
        return loss * float("nan") if self.calls in self.nan_calls else loss
'''


def test_nan_loss_is_reported_skipped_then_stops(repo_root, shapes_root, tmp_path):
    (tmp_path / "nanloss.py").write_text(NAN_LOSS)
    run_dir = tmp_path / "run"
    # 6 iterations per epoch: NaN at steps 8 and 9 (epoch 2); one skip allowed
    args = [*FAST, "trainer.max_epochs=3", "trainer.eval_interval=3", "trainer.progress_bar=false",
            f"dataset.root={shapes_root}", "model.head.cls_loss._target_=nanloss.NaNOnCalls",
            "+model.head.cls_loss.nan_calls=[8,9]", "allow_targets=[nanloss]", "trainer.skip_nonfinite=1",
            f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "tools/train.py", *args], cwd=repo_root, capture_output=True, text=True,
                          env=env, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2, log[-3000:]
    assert "Traceback" not in log
    assert "Non-finite loss at epoch 2, iteration 8: loss_cls (loss_cls=nan, loss_box=" in log
    assert "Step skipped (1 of trainer.skip_nonfinite=1)" in log
    assert "Error: Non-finite loss at epoch 2, iteration 9: loss_cls" in log
    assert "the 1 skips allowed by trainer.skip_nonfinite are used up. Training stopped" in log
    ids = log.split("iteration 9: loss_cls", 1)[1].split("images in the batch: [", 1)[1].split("]", 1)[0]
    assert len(ids.split(",")) == 4 and all(i.strip().isdigit() for i in ids.split(","))  # batch_size=4
    last = load_checkpoint(run_dir / "checkpoints" / "last.pth")
    assert (last["epoch"], last["iter"]) == (1, 6)  # epoch 1's, untouched by the NaN steps
    assert f"{run_dir / 'checkpoints' / 'last.pth'} is kept as it was" in log
