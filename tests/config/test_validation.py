"""Bad configs fail before any work starts, with one paragraph naming the key and a suggestion."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from framework.config.cli import check_overrides
from framework.config.validation import ConfigError

BAD = [
    (["optimizer.lrr=0.1"], ["'optimizer.lrr'", "Did you mean 'optimizer.lr'?"]),
    (["trainer.max_epochs=abc"], ["'trainer.max_epochs'", "'abc'", "Integer"]),
    (["model=resnet50_fpm"], ["'resnet50_fpm'", "config group 'model'", "Did you mean 'resnet50_fpn'?"]),
]


@pytest.mark.parametrize("overrides,expected", BAD, ids=[b[0][0] for b in BAD])
def test_bad_overrides_are_explained(overrides, expected):
    with pytest.raises(ConfigError) as info:
        check_overrides("train", overrides)
    message = str(info.value)
    for part in expected:
        assert part in message
    assert "\n" not in message  # one paragraph


@pytest.mark.parametrize("overrides,expected", [
    (["model.backbone.depht=50"], "Did you mean 'model.backbone.depth'?"),
    (["optimzer.lr=0.1"], "Did you mean 'optimizer'?"),
    (["model/head/box_loss=gio"], "Did you mean 'giou'?"),
    (["+model.backbone.depht=50"], "not an argument of framework.models.backbones.ResNet"),
    (["optimizer.lr=abc"], "expects float"),
    (["model.neck._target_=framework.models.necks.FNP"], "Did you mean 'framework.models.necks.FPN'?"),
    (["-m", "trainer.max_epochs=1,x"], "'x'"),
])
def test_more_mistakes(overrides, expected):
    with pytest.raises(ConfigError, match=None) as info:
        check_overrides("train", overrides)
    assert expected in str(info.value)


@pytest.mark.parametrize("overrides,expected", BAD, ids=[b[0][0] for b in BAD])
def test_cli_reports_without_traceback(overrides, expected, repo_root, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([sys.executable, "tools/train.py", *overrides], cwd=repo_root, capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert expected[-1] in proc.stderr
    assert "HYDRA_FULL_ERROR=1" in proc.stderr


def test_full_error_shows_hydras_own_report(repo_root):
    proc = subprocess.run([sys.executable, "tools/train.py", "optimizer.lrr=0.1"], cwd=repo_root, capture_output=True,
                          text=True, env={**os.environ, "HYDRA_FULL_ERROR": "1"}, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_type_hint_checks():
    from typing import Literal, Optional, Sequence

    import torch

    from framework.config.validation import _scalar_ok

    assert _scalar_ok(1, float) is True and _scalar_ok("abc", float) is False and _scalar_ok(True, int) is False
    assert _scalar_ok("abc", float | torch.Tensor) is False and _scalar_ok(0.1, float | torch.Tensor) is True
    assert _scalar_ok(None, Optional[float]) is True and _scalar_ok(None, float) is False
    assert _scalar_ok([1, 2], Sequence[int]) is True and _scalar_ok("ab", Sequence[int]) is False
    assert _scalar_ok("c5", Literal["c5", "p5"]) is True and _scalar_ok("c6", Literal["c5", "p5"]) is False
    assert _scalar_ok("x", bool | str) is True and _scalar_ok(3, object) is True


def test_dotted_key_naming_a_group_selects_an_option():
    from framework.config.cli import check_overrides, expand_group_shortcuts
    from framework.config.validation import ConfigError

    assert expand_group_shortcuts(["model.head.box_loss=ciou", "model.head.box_loss.loss_weight=2", "optimizer.lr=1"]) \
        == ["model/head/box_loss=ciou", "model.head.box_loss.loss_weight=2", "optimizer.lr=1"]
    cfg = check_overrides("train", ["model=fcos_r50_fpn", "model.head.box_loss=ciou"])
    assert cfg.model.head.box_loss._target_.endswith("CIoULoss")
    with pytest.raises(ConfigError, match="Did you mean 'ciou'"):
        expand_group_shortcuts(["model.head.box_loss=ciuo"])
