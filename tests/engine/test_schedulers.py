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
                 warmup_iters=4, warmup_ratio=0.01, warmup_max_share=None)
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


@pytest.mark.parametrize("kwargs", [dict(policy="exponential"), dict(warmup="cos"), dict(min_ratio=2.0),
                                    dict(warmup="exp", warmup_ratio=0.0), dict(milestones=[0.5, 3]),
                                    dict(warmup_max_share=0.0)])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        make(**kwargs)


# ------------------------------------------------------------------------------------- schedules follow the run


def test_fractional_milestones_follow_max_epochs():
    """[0.667, 0.917] is the 1x schedule's epochs 8 and 11 of 12, and moves with the run's length."""
    for epochs, expected in [(12, [8, 11]), (36, [24, 33]), (300, [200, 275])]:
        sched = make(policy="step", milestones=[0.667, 0.917], max_epochs=epochs, iters_per_epoch=10)
        assert sched.milestones == expected
    by_iter = make(policy="step", milestones=[0.5], max_epochs=4, iters_per_epoch=10, by_epoch=False, warmup="none")
    got = lrs(by_iter, 40)
    assert got[19] == pytest.approx(0.1) and got[20] == pytest.approx(0.01)


def test_epoch_milestone_past_the_end_is_refused():
    with pytest.raises(ValueError, match=r"milestone epoch\(s\) \[12\].*12-epoch run"):
        make(policy="step", milestones=[8, 12], max_epochs=12, iters_per_epoch=10)
    # the config path reports it as a ConfigError naming the keys, before any training
    from functools import partial

    from framework.config.validation import ConfigError

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match=r"does not fit this run.*scheduler\.\*, trainer\.max_epochs"):
        build_scheduler(partial(WarmupMultiStepLR, milestones=[8, 11], max_epochs=10), opt, 5)


def test_warmup_is_capped_to_a_share_of_the_run():
    """The issue's case: 500 warmup iterations on a 34-epoch run of 18 iterations per epoch would outlast the run's
    milestones; capped to 10 % of the 612 iterations, and the note says so."""
    sched = make(policy="cosine", max_epochs=34, iters_per_epoch=18, warmup_iters=500, by_epoch=False)
    assert sched.warmup_iters == 61
    assert "shortened to 61" in sched.notes[0]
    got = lrs(sched, 62)
    assert got[60] < 0.1 and got[61] == pytest.approx(0.1 * sched.decay(61))
    # warmup in epochs, the longer of the two settings wins
    assert make(policy="cosine", max_epochs=100, iters_per_epoch=18, warmup_iters=20, warmup_epochs=3).warmup_iters == 54


def test_schedules_that_cannot_fit_are_refused():
    with pytest.raises(ValueError, match="as long as the whole run"):
        make(policy="cosine", max_epochs=2, iters_per_epoch=5, warmup_iters=10, warmup_max_share=None)
    with pytest.raises(ValueError, match="outlasts the first milestone"):
        make(policy="step", milestones=[1, 3], max_epochs=4, iters_per_epoch=5, warmup_iters=8, warmup_max_share=None)


def test_fit_moves_the_schedule_to_a_new_length():
    sched = make(policy="linear", max_epochs=300, iters_per_epoch=10, warmup="none", min_ratio=0.01, by_epoch=True)
    lrs(sched, 10)  # one epoch done, as when trainer.max_time decides after the first epoch
    sched.fit(4)
    got = lrs(sched, 30)  # epochs 2-4 of a 4-epoch linear decay
    assert got[0] == pytest.approx(0.1 * (0.01 + 0.99 * 3 / 4))
    assert got[-1] == pytest.approx(0.1 * (0.01 + 0.99 * 1 / 4))
    step = make(policy="step", milestones=[0.5], max_epochs=300, iters_per_epoch=10, warmup="none")
    step.fit(10)
    assert step.milestones == [5]


def test_time_budget_requires_a_refittable_schedule():
    from functools import partial

    from framework.config.validation import ConfigError
    from framework.engine.schedulers import check_fits_time_budget

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    check_fits_time_budget(make(policy="step", milestones=[0.5], max_epochs=10))
    with pytest.raises(ConfigError, match="fractions"):
        check_fits_time_budget(make(policy="step", milestones=[5], max_epochs=10))
    with pytest.raises(ConfigError, match="OneCycleLR"):
        check_fits_time_budget(build_scheduler(partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, epochs=2),
                                               opt, 5))


def test_epochs_within_budget():
    from framework.engine.time_budget import epochs_within_budget

    assert epochs_within_budget(600, 20, 1) == 30  # 20 s per epoch: 29 more fit in the 580 s left
    assert epochs_within_budget(600, 590, 10) == 10  # 59 s per epoch, 10 s left: none more
    assert epochs_within_budget(600, 700, 10) == 10
    with pytest.raises(ValueError):
        epochs_within_budget(600, 0, 0)
