"""The EMA callback: updated after every optimizer step; the checkpoint's `model` is the average (what is
evaluated), `train_model` the raw weights."""
from __future__ import annotations

import torch

from framework.engine.callbacks import EMA
from framework.engine.checkpoint import load_checkpoint


def test_checkpoint_holds_the_average_and_the_raw_weights(engine_run):
    trainer = engine_run.trainer
    ema = trainer.callback(EMA).ema
    ckpt = load_checkpoint(engine_run.work_dir / "checkpoints" / "last.pth")
    assert ckpt["ema"] == {"updates": 6} and trainer.eval_model is ema.module
    ema_state, raw_state = ema.module.state_dict(), trainer.model.state_dict()
    assert all(torch.equal(ckpt["model"][k], ema_state[k]) for k in ema_state)  # evaluated weights = EMA
    assert all(torch.equal(ckpt["train_model"][k], raw_state[k]) for k in raw_state)
    assert any(not torch.equal(ema_state[k], raw_state[k]) for k in raw_state if raw_state[k].is_floating_point())


def test_disabled_ema_leaves_the_model_alone():
    model = torch.nn.Linear(2, 2)
    trainer = type("T", (), {"model": model, "eval_model": model, "step_skipped": False})()
    callback = EMA(decay=0.9, tau=1.0, enabled=False)
    callback.on_train_start(trainer)
    callback.on_step_end(trainer, {})
    checkpoint: dict = {}
    callback.on_checkpoint(trainer, checkpoint)
    assert callback.ema is None and trainer.eval_model is model and checkpoint == {}
