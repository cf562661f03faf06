"""A user's own callback, in a module outside the package, added from the config (`+callbacks.NAME._target_`,
with `allow_targets`), next to a built-in removed (`~callbacks.tensorboard`); its checkpoint keys come back on
resume. A callback that raises stops training with a message naming it, after last.pth is saved."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from framework.engine.callbacks import CallbackError
from framework.engine.checkpoint import load_checkpoint

from .test_trainer import make_trainer

USER_MODULE = '''
import json


class Recorder:
    """Writes every event it sees to a JSON-lines file; keeps a counter in the checkpoint."""

    def __init__(self, out, fail_at_epoch=None):
        self.out, self.fail_at_epoch, self.steps = out, fail_at_epoch, 0

    def _note(self, **record):
        with open(self.out, "a") as f:
            f.write(json.dumps(record) + "\\n")

    def on_train_start(self, trainer):
        self._note(event="train_start", epoch=trainer.epoch, work_dir=str(trainer.work_dir),
                   has_cfg="trainer" in trainer.cfg, optimizer=type(trainer.optimizer).__name__)

    def on_step_end(self, trainer, losses):
        self.steps += 1
        self._note(event="step", iter=trainer.iter, losses=dict(losses))

    def on_eval_end(self, trainer, metrics):
        self._note(event="eval", epoch=trainer.epoch, metrics=metrics)

    def on_epoch_end(self, trainer):
        self._note(event="epoch_end", epoch=trainer.epoch)
        if trainer.epoch == self.fail_at_epoch:
            raise ValueError("my rule broke")

    def on_checkpoint(self, trainer, checkpoint):
        checkpoint["recorder"] = {"steps": self.steps}

    def on_resume(self, trainer, checkpoint):
        self.steps = checkpoint["recorder"]["steps"]
        self._note(event="resume", steps=self.steps)

    def on_train_end(self, trainer):
        self._note(event="train_end", epoch=trainer.epoch)
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "user_code"
    package.mkdir()
    (package / "my_callbacks.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(package))
    yield "my_callbacks"
    sys.modules.pop("my_callbacks", None)


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_user_callback_from_the_config_raises_then_resumes(shapes_root, tmp_path, user_module):
    out = tmp_path / "events.jsonl"
    added = [f"+callbacks.recorder._target_={user_module}.Recorder", f"+callbacks.recorder.out={out}",
             f"allow_targets=[{user_module}.]", "~callbacks.tensorboard", "trainer.eval_interval=1"]
    run1 = tmp_path / "run1"
    trainer = make_trainer(shapes_root, run1, *added, "+callbacks.recorder.fail_at_epoch=1", "trainer.max_epochs=2")
    with pytest.raises(CallbackError) as info:
        trainer.fit()
    message = str(info.value)
    assert message.startswith("Callback 'recorder' (my_callbacks.Recorder) raised in on_epoch_end after 1 epoch(s) "
                              "and 6 iteration(s): ValueError: my rule broke")
    assert "~callbacks.recorder" in message
    last = load_checkpoint(run1 / "checkpoints" / "last.pth")
    assert last["epoch"] == 1 and last["recorder"] == {"steps": 6}  # saved first, with the callback's own key
    seen = events(out)
    assert seen[0] == {"event": "train_start", "epoch": 0, "work_dir": str(run1), "has_cfg": True,
                       "optimizer": "SGD"}
    steps = [e for e in seen if e["event"] == "step"]
    assert [e["iter"] for e in steps] == [1, 2, 3, 4, 5, 6] and set(steps[0]["losses"]) == {"loss_cls", "loss_box"}
    assert all(isinstance(v, float) for v in steps[0]["losses"].values())
    evals = [e for e in seen if e["event"] == "eval"]
    metrics_json_keys = set(json.loads((run1 / "metrics.jsonl").read_text().splitlines()[-1]))
    assert evals and set(evals[0]["metrics"]) <= metrics_json_keys and "bbox/mAP" in evals[0]["metrics"]
    assert not (run1 / "tb").exists()  # ~callbacks.tensorboard

    out.unlink()
    trainer = make_trainer(shapes_root, tmp_path / "run2", *added, "trainer.max_epochs=2",
                           f"resume={run1 / 'checkpoints' / 'last.pth'}")
    trainer.fit()
    seen = events(out)
    assert seen[0] == {"event": "resume", "steps": 6} and seen[-1] == {"event": "train_end", "epoch": 2}
    assert load_checkpoint(tmp_path / "run2" / "checkpoints" / "last.pth")["recorder"] == {"steps": 12}


def test_a_user_callback_needs_allow_targets(shapes_root, tmp_path, user_module):
    from framework.config.validation import ConfigError

    with pytest.raises(ConfigError, match="my_callbacks"):
        make_trainer(shapes_root, tmp_path, f"+callbacks.recorder._target_={user_module}.Recorder",
                     f"+callbacks.recorder.out={tmp_path / 'x'}")
