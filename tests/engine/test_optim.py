from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from framework.config import CONFIG_DIR
from framework.config.validation import ConfigError
from framework.engine.optim import OPTIMIZER_SETTINGS, build_optimizer, param_groups, scaled_lr, split_optimizer_node

OPTIMIZER_YAMLS = sorted((CONFIG_DIR / "optimizer").glob("*.yaml"))


class Tiny(nn.Module):
    """backbone (conv + BN, conv + GN), neck (frozen conv), head (linear): every kind of parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1, bias=False),
                                      nn.GroupNorm(2, 4))
        self.neck = nn.Conv2d(4, 4, 1)
        self.neck.requires_grad_(False)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.backbone(x)).mean((2, 3)))


def by_name(model: nn.Module, groups: list[dict]) -> dict[str, dict]:
    ids = {id(p): g for g in groups for p in g["params"]}
    return {n: ids[id(p)] for n, p in model.named_parameters() if id(p) in ids}


def test_norm_and_bias_get_no_decay():
    model = Tiny()
    groups = param_groups(model, lr=0.1, weight_decay=1e-4)
    assert [(g["name"], g["weight_decay"]) for g in groups] == [("weights decay", 1e-4),
                                                                 ("bias/norm no-decay", 0.0)]
    g = by_name(model, groups)
    decayed = {n for n, grp in g.items() if grp["weight_decay"] > 0}
    assert decayed == {"backbone.0.weight", "backbone.2.weight", "head.weight"}
    assert {n for n in g if n not in decayed} == {"backbone.0.bias", "backbone.1.weight", "backbone.1.bias",
                                                  "backbone.3.weight", "backbone.3.bias", "head.bias"}
    assert all(grp["lr"] == 0.1 and grp["lr_mult"] == 1.0 for grp in groups)


def test_decay_mults_for_norm_and_bias():
    model = Tiny()
    g = by_name(model, param_groups(model, lr=0.1, weight_decay=1.0, norm_decay_mult=0.5, bias_decay_mult=0.25))
    assert g["backbone.1.weight"]["weight_decay"] == 0.5 and g["backbone.3.bias"]["weight_decay"] == 0.5
    assert g["head.bias"]["weight_decay"] == 0.25 and g["backbone.0.bias"]["weight_decay"] == 0.25
    assert g["head.weight"]["weight_decay"] == 1.0


def test_every_trainable_parameter_once_frozen_none():
    model = Tiny()
    model.head2 = model.head  # a shared module: its parameters must appear once
    groups = param_groups(model, lr=0.1, weight_decay=1e-4, lr_mult={"backbone": 0.1}, decay_mult={"head": 2.0})
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert not {id(p) for p in model.neck.parameters()} & set(ids)


def test_lr_mult_and_decay_mult_by_prefix():
    model = Tiny()
    groups = param_groups(model, lr=0.1, weight_decay=1e-4, norm_decay_mult=1.0, bias_decay_mult=1.0,
                          lr_mult={"backbone": 0.1}, decay_mult={"head": 0.0})
    g = by_name(model, groups)
    for name, grp in g.items():
        on_backbone = name.startswith("backbone.")
        assert grp["lr"] == pytest.approx(0.01 if on_backbone else 0.1)
        assert grp["lr_mult"] == (0.1 if on_backbone else 1.0)
        assert grp["weight_decay"] == (0.0 if name.startswith("head.") else 1e-4)
    assert [grp["name"] for grp in groups] == ["backbone weights/bias/norm decay", "head weights/bias no-decay"]


def test_longest_prefix_wins_at_dot_boundaries():
    model = nn.Module()
    model.backbone = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model.backbone2 = nn.Linear(2, 2)  # "backbone" must not match "backbone2"
    g = by_name(model, param_groups(model, lr=1.0, weight_decay=0.0,
                                    lr_mult={"backbone": 0.1, "backbone.1": 0.5, "backbone.1.weight": 0.0}))
    assert g["backbone.0.weight"]["lr"] == pytest.approx(0.1)
    assert g["backbone.1.bias"]["lr"] == pytest.approx(0.5)
    assert g["backbone.1.weight"]["lr"] == 0.0
    assert g["backbone2.weight"]["lr"] == 1.0


def test_groups_are_few_and_deterministic():
    model = Tiny()
    first = param_groups(model, lr=0.1, weight_decay=0.0, lr_mult={"head": 1.0})
    assert len(first) == 1  # no weight decay and no lr change: one group
    a = param_groups(model, lr=0.1, weight_decay=1e-4, lr_mult={"head": 0.5})
    b = param_groups(model, lr=0.1, weight_decay=1e-4, lr_mult={"head": 0.5})
    assert [g["name"] for g in a] == [g["name"] for g in b]
    assert [[id(p) for p in g["params"]] for g in a] == [[id(p) for p in g["params"]] for g in b]


def test_typo_and_negative_mults_raise():
    with pytest.raises(ConfigError, match=r"optimizer.paramwise.lr_mult key 'backbon' matches no parameter; "
                                          r"parameter names start with the top-level modules: backbone, neck, head"):
        param_groups(Tiny(), 0.1, 1e-4, lr_mult={"backbon": 0.1})
    with pytest.raises(ValueError, match="decay_mult key 'head.weights'"):
        param_groups(Tiny(), 0.1, 1e-4, decay_mult={"head.weights": 0.1})
    with pytest.raises(ValueError, match=r"lr_mult\['head'\] must be >= 0"):
        param_groups(Tiny(), 0.1, 1e-4, lr_mult={"head": -1.0})
    with pytest.raises(ValueError, match="norm_decay_mult"):
        param_groups(Tiny(), 0.1, 1e-4, norm_decay_mult=-1.0)
    # a key naming frozen parameters only is not a typo
    assert param_groups(Tiny(), 0.1, 1e-4, lr_mult={"neck": 0.1})


@pytest.mark.parametrize("base_lr,global_batch,base_batch,expected", [
    (0.02, 32, 16, 0.04),
    (0.01, 8, 16, 0.005),
    (0.02, 2 * 8, 16, 0.02),  # 2 images per GPU on 8 GPUs: the recipe's batch, lr unchanged
    (0.001, 64, 64, 0.001),
    (0.1, 1, 256, 0.1 / 256),
])
def test_scaled_lr(base_lr, global_batch, base_batch, expected):
    assert scaled_lr(base_lr, global_batch, base_batch) == pytest.approx(expected)


@pytest.mark.parametrize("args,match", [((0.01, 0, 16), "global_batch_size"), ((0.01, 8, -16), "base_batch_size"),
                                        ((0.01, 8.0, 16), "global_batch_size"), ((0.01, True, 16), "global_batch")])
def test_scaled_lr_rejects_bad_batch_sizes(args, match):
    with pytest.raises(ValueError, match=match):
        scaled_lr(*args)


def test_split_plain_dict():
    node = {"_target_": "torch.optim.SGD", "lr": 0.1, "paramwise": {"lr_mult": {"a": 1}}}
    rest, settings = split_optimizer_node(node)
    assert rest == {"_target_": "torch.optim.SGD", "lr": 0.1}
    assert settings == {"paramwise": {"lr_mult": {"a": 1}}, "auto_scale_lr": {}}
    assert "paramwise" in node  # the input is left alone


def test_split_keeps_interpolations():
    root = OmegaConf.create({"base_lr": 0.02, "optimizer": {
        "_target_": "torch.optim.SGD", "_partial_": True, "lr": "${base_lr}",
        "paramwise": {"lr_mult": {"backbone": "${mult}"}}, "auto_scale_lr": None}, "mult": 0.1})
    rest, settings = split_optimizer_node(root.optimizer)
    assert not set(OPTIMIZER_SETTINGS) & set(rest.keys())
    assert set(OPTIMIZER_SETTINGS) <= set(root.optimizer.keys())
    assert rest.lr == 0.02 and OmegaConf.to_yaml(rest).count("${base_lr}") == 1
    assert settings == {"paramwise": {"lr_mult": {"backbone": 0.1}}, "auto_scale_lr": {}}
    opt = build_optimizer(instantiate(rest), Tiny(), **settings["paramwise"])
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([0.002, 0.02])


@pytest.mark.parametrize("path", OPTIMIZER_YAMLS, ids=[p.stem for p in OPTIMIZER_YAMLS])
def test_config_builds_and_steps(path):
    node = OmegaConf.load(path)
    assert set(OPTIMIZER_SETTINGS) <= set(node.keys())
    assert node.auto_scale_lr.base_batch_size is None
    rest, settings = split_optimizer_node(node)
    make = instantiate(rest)
    model = Tiny()
    opt = build_optimizer(make, model, **{**settings["paramwise"], "lr_mult": {"backbone": 0.1}})
    assert type(opt).__name__ == node._target_.rsplit(".", 1)[1]
    g = by_name(model, opt.param_groups)
    assert g["head.weight"]["lr"] == pytest.approx(node.lr)
    assert g["backbone.0.weight"]["lr"] == pytest.approx(node.lr * 0.1)
    assert g["head.weight"]["weight_decay"] == pytest.approx(node.weight_decay)
    assert g["head.bias"]["weight_decay"] == 0.0 and g["backbone.1.weight"]["weight_decay"] == 0.0
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert any(changed) and not any(c for c, p in zip(changed, model.parameters()) if not p.requires_grad)


def test_lr_scale_reaches_the_scheduler():
    model = Tiny()
    make = instantiate({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01, "momentum": 0.9})
    scale = scaled_lr(1.0, 32, 16)
    opt = build_optimizer(make, model, lr_mult={"backbone": 0.1}, lr_scale=scale)
    assert opt.defaults["lr"] == pytest.approx(0.02)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.002, 0.02])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 0.5)
    assert sched.base_lrs == pytest.approx([g["initial_lr"] for g in opt.param_groups])
    assert sorted(sched.base_lrs) == pytest.approx([0.002, 0.02])
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.001, 0.01])


def test_defaults_come_from_the_class():
    opt = build_optimizer(instantiate({"_target_": "torch.optim.AdamW", "_partial_": True}), Tiny())
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]  # AdamW's default weight decay
    assert all(g["lr"] == 0.001 for g in opt.param_groups)
    with pytest.raises(ValueError, match="lr_scale"):
        build_optimizer(instantiate({"_target_": "torch.optim.SGD", "_partial_": True}), Tiny(), lr_scale=0.0)
