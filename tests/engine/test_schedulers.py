import pytest
import torch

from framework.engine.schedulers import WarmupMultiStepLR


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
