import math

import pytest
import torch

from framework.engine.schedulers import WarmupLR, WarmupMultiStepLR, build_scheduler


def lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.optimizer.step()
        sched.step()
    return out


def test_warmup_then_steps_by_epoch():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = WarmupMultiStepLR(opt, milestones=[2, 3], gamma=0.1, warmup_iters=4, warmup_ratio=0.0, iters_per_epoch=5)
    got = lrs(sched, 20)
    assert got[:5] == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1])
    assert got[5:10] == pytest.approx([0.1] * 5)
    assert got[10:15] == pytest.approx([0.01] * 5)
    assert got[15:20] == pytest.approx([0.001] * 5)


def test_state_dict_round_trip():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = WarmupMultiStepLR(opt, milestones=[1], warmup_iters=3, iters_per_epoch=4)
    lrs(sched, 6)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched2 = WarmupMultiStepLR(opt2, milestones=[1], warmup_iters=3, iters_per_epoch=4)
    opt2.load_state_dict(opt.state_dict())  # as on resume: the optimizer carries the current lr
    sched2.load_state_dict(sched.state_dict())
    assert lrs(sched2, 3) == pytest.approx(lrs(sched, 3))


def make(lr=0.1, **kwargs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    return WarmupLR(opt, **kwargs)


def test_cosine_by_iteration_and_by_epoch():
    sched = make(policy="cosine", max_epochs=2, iters_per_epoch=5, by_epoch=False, warmup="none", min_ratio=0.1)
    got = lrs(sched, 10)
    expected = [0.1 * (0.1 + 0.9 * (1 + math.cos(math.pi * t / 10)) / 2) for t in range(10)]
    assert got == pytest.approx(expected)
    by_epoch = lrs(make(policy="cosine", max_epochs=2, iters_per_epoch=5, warmup="none"), 10)
    assert by_epoch == pytest.approx([0.1] * 5 + [0.05] * 5)  # cos(π/2): halfway after one of two epochs


def test_poly_and_exp_warmup():
    sched = make(policy="poly", power=2.0, max_epochs=1, iters_per_epoch=10, by_epoch=False, warmup="exp",
                 warmup_iters=4, warmup_ratio=0.01)
    got = lrs(sched, 10)
    poly = [(1 - t / 10) ** 2 for t in range(10)]
    warm = [0.01 ** (1 - t / 4) if t < 4 else 1.0 for t in range(10)]
    assert got == pytest.approx([0.1 * p * w for p, w in zip(poly, warm)])
    assert got[0] == pytest.approx(0.1 * 0.01)  # exp warmup starts at warmup_ratio


def test_onecycle_gets_steps_per_epoch_from_build_scheduler():
    from functools import partial

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    sched = build_scheduler(partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, epochs=2), opt, 5)
    assert sched.total_steps == 10
    got = lrs(sched, 10)  # exactly the run: one more step would be an error in torch
    assert max(got) == pytest.approx(0.1, rel=0.05) and got[0] == pytest.approx(0.1 / 25)


@pytest.mark.parametrize("kwargs", [dict(policy="linear"), dict(warmup="cos"), dict(min_ratio=2.0),
                                    dict(warmup="exp", warmup_ratio=0.0)])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        make(**kwargs)
