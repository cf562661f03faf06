"""framework/engine/ema.py: the ramped decay, the averaging recursion, buffers, checkpoints and wrapped models."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from framework.engine.ema import ModelEMA


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def _fill(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                v.fill_(value)


def test_decay_ramp():
    ema = ModelEMA(_model(), decay=0.999, tau=100)
    assert ema.decay_at(0) == 0.0
    assert ema.decay_at(100) == pytest.approx(0.999 * (1 - math.exp(-1)))
    assert ema.decay_at(10**6) == pytest.approx(0.999)
    assert all(ema.decay_at(n) < ema.decay_at(n + 1) for n in range(0, 500, 50))


def test_copy_is_frozen_and_in_eval_mode():
    model = _model().train()
    ema = ModelEMA(model)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters()) and model.training  # the model is untouched
    assert ema.module[0].weight.data_ptr() != model[0].weight.data_ptr()


def test_update_from_identical_model_changes_nothing():
    model = _model()
    ema = ModelEMA(model, decay=0.9, tau=1)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    ema.update(model)
    assert ema.updates == 1
    for k, v in ema.module.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=1e-7)


def test_three_updates_follow_the_closed_form():
    model, decay, tau = _model(), 0.9, 2.0
    _fill(model, 1.0)
    ema = ModelEMA(model, decay=decay, tau=tau)
    expected = 1.0
    for n, value in enumerate([3.0, -2.0, 5.0], start=1):
        _fill(model, value)
        ema.update(model)
        d = decay * (1 - math.exp(-n / tau))
        expected = d * expected + (1 - d) * value
    assert ema.updates == 3
    for k, v in ema.module.state_dict().items():
        if v.dtype.is_floating_point:  # weights, biases and BatchNorm running_mean/var alike
            torch.testing.assert_close(v, torch.full_like(v, expected), msg=k)


def test_batchnorm_stats_averaged_and_counter_copied():
    model = _model()
    ema = ModelEMA(model, decay=0.5, tau=1e-6)  # d = 0.5 from the first update on
    bn, bn_ema = model[1], ema.module[1]
    old_mean = bn_ema.running_mean.clone()
    model.train()
    for _ in range(3):
        model(torch.randn(8, 3, 8, 8) * 3 + 1)
    assert int(bn.num_batches_tracked) == 3
    ema.update(model)
    assert int(bn_ema.num_batches_tracked) == 3  # integer buffer: copied, not averaged
    torch.testing.assert_close(bn_ema.running_mean, 0.5 * old_mean + 0.5 * bn.running_mean)
    torch.testing.assert_close(bn_ema.running_var, 0.5 * torch.ones(4) + 0.5 * bn.running_var)


def test_state_dict_round_trip():
    model = _model()
    ema = ModelEMA(model, decay=0.99, tau=10)
    _fill(model, 2.0)
    for _ in range(4):
        ema.update(model)
    state = ema.state_dict()
    assert state["updates"] == 4 and state["decay"] == 0.99 and state["tau"] == 10.0
    resumed = ModelEMA(_model(), decay=0.995, tau=20)  # a resumed run may change decay and tau in the config
    resumed.load_state_dict(state)
    assert resumed.updates == 4 and resumed.decay == 0.995 and resumed.tau == 20.0
    for k, v in resumed.module.state_dict().items():
        torch.testing.assert_close(v, state["module"][k], rtol=0, atol=0)


def test_wrapped_model_is_unwrapped():
    model = _model()
    wrapped = nn.DataParallel(model)  # on CPU it simply wraps; its keys carry a "module." prefix like DDP's
    ema = ModelEMA(wrapped, decay=0.5, tau=1e-6)
    assert not isinstance(ema.module, nn.DataParallel)
    assert list(ema.module.state_dict()) == list(model.state_dict())
    _fill(model, 3.0)
    ema.update(wrapped)
    weight = ema.module[0].weight
    torch.testing.assert_close(weight, 0.5 * _model()[0].weight + 1.5)


@pytest.mark.parametrize("kwargs,name", [({"decay": 1.0}, "trainer.ema.decay"), ({"decay": 0.0}, "trainer.ema.decay"),
                                         ({"decay": -0.5}, "trainer.ema.decay"), ({"tau": 0.0}, "trainer.ema.tau")])
def test_invalid_settings_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ModelEMA(_model(), **kwargs)


def test_mismatched_model_is_a_clear_error():
    ema = ModelEMA(_model())
    with pytest.raises(RuntimeError, match="state-dict keys differ"):
        ema.update(nn.Linear(2, 2))
