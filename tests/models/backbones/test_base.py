"""The contract every backbone keeps (framework/models/backbones/base.py): outputs match `out_channels`/`strides`,
`out_indices` selects stages, frozen stages stay frozen and in eval mode, `norm_eval` freezes BatchNorm statistics,
weights are resolved by name; and every backbone config builds one that plugs into the FPN."""
from __future__ import annotations

import inspect
import urllib.error
from importlib.util import find_spec

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from torch import nn
from torchvision import models

from framework.config import CONFIG_DIR
from framework.models.backbones import (
    VGG, MobileNetV2, MobileNetV3, PretrainedWeightsError, ResNet, SEResNet, ShuffleNetV2, TimmBackbone,
)
from framework.models.necks import FPN

needs_timm = pytest.mark.skipif(find_spec("timm") is None, reason="timm is not installed")

BUILDERS = {
    "resnet18": lambda **kw: ResNet(depth=18, **kw),
    "vgg16_bn": VGG,
    "mobilenet_v2": MobileNetV2,
    "mobilenet_v3_large": MobileNetV3,
    "mobilenet_v3_small": lambda **kw: MobileNetV3(variant="small", **kw),
    "shufflenet_v2": ShuffleNetV2,
    "se_resnet50": SEResNet,
    "timm_resnet18": TimmBackbone,
}
NAMES = [pytest.param(n, marks=needs_timm) if n.startswith("timm") else n for n in BUILDERS]


def build(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return BUILDERS[name](**kwargs)


def build_on_meta(name: str, **kwargs) -> nn.Module:
    """Structure only (no memory, no initialization): enough for channels, strides and parameter counts."""
    with torch.device("meta"):
        return BUILDERS[name](**kwargs)


def submodules(stages: list[nn.Module]) -> list[nn.Module]:
    """Every module inside the stages (not the stage containers, which some backbones create on the fly)."""
    return [m for stage in stages for child in stage.children() for m in child.modules()]


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("name", NAMES)
def test_outputs_match_channels_and_strides(name):
    net = build(name).eval()
    assert net.strides == [8, 16, 32] and len(net.out_channels) == 3
    with torch.no_grad():
        feats = net(torch.randn(2, 3, 64, 96))
    assert [f.shape[1] for f in feats] == net.out_channels
    assert [tuple(f.shape[-2:]) for f in feats] == [(64 // s, 96 // s) for s in net.strides]
    assert all(f.shape[0] == 2 for f in feats)


@pytest.mark.parametrize("name", NAMES)
def test_out_indices_select_stages_and_later_stages_are_not_built(name):
    net = build(name, out_indices=(1, 2)).eval()
    assert net.strides == [4, 8]
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == net.out_channels
    assert [f.shape[-1] for f in feats] == [16, 8]
    assert net.out_channels == build_on_meta(name, out_indices=(1, 2, 3, 4)).out_channels[:2]
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in build_on_meta(name).parameters())


@pytest.mark.parametrize("name", NAMES)
def test_frozen_stages_stay_frozen_and_in_eval_mode(name):
    frozen = 2  # stem, stage 1 and stage 2, whose output C3 is returned: no gradient may flow into them
    net = build(name, frozen_stages=frozen)
    net.eval().train()  # a train() after construction must keep the frozen part frozen
    stages = net.stages()
    frozen_part, trainable_part = nn.ModuleList(stages[: frozen + 1]), nn.ModuleList(stages[frozen + 1:])
    assert not any(p.requires_grad for p in frozen_part.parameters())
    assert not any(m.training for m in submodules(stages[: frozen + 1]))
    assert all(p.requires_grad for p in trainable_part.parameters())
    assert all(m.training for m in submodules(stages[frozen + 1:]))
    bns = batchnorms(frozen_part)
    before = [bn.running_mean.clone() for bn in bns]
    feats = net(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before, bns))
    sum(f.mean() for f in feats).backward()
    assert all(p.grad is None for p in frozen_part.parameters())
    first_trainable = next(s for s in stages[frozen + 1:] if list(s.parameters()))
    assert all(p.grad is not None for p in first_trainable.parameters())
    assert sum(p.grad.abs().sum() for p in first_trainable.parameters()) > 0


@pytest.mark.parametrize("name", NAMES)
def test_norm_eval_keeps_batchnorm_statistics(name):
    net = build(name, norm_eval=True).train()
    bns = batchnorms(net)
    assert bns and not any(bn.training for bn in bns)
    assert net.training and any(m.training for m in net.modules() if not isinstance(m, nn.modules.batchnorm._BatchNorm))
    assert all(p.requires_grad for p in net.parameters())
    before = [bn.running_mean.clone() for bn in bns]
    net(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before, bns))


def test_norm_eval_is_off_by_default():
    net = ResNet(depth=18).train()
    assert all(bn.training for bn in batchnorms(net))


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments_are_explained(name):
    with pytest.raises(ValueError, match="out_indices"):
        build(name, out_indices=(4, 2))
    with pytest.raises(ValueError, match="out_indices"):
        build(name, out_indices=(2, 9))
    with pytest.raises(ValueError, match="frozen_stages must be in -1..4"):
        build(name, frozen_stages=5)


def test_unknown_weights_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        ResNet(depth=50, pretrained="IMAGENET_V9")
    with pytest.raises(ValueError, match="not a weights name of mobilenet_v3_small"):
        MobileNetV3(variant="small", pretrained="nope")


@pytest.mark.parametrize("build_pretrained", [lambda: ResNet(depth=18, pretrained=True),
                                              lambda: VGG(depth=11, batch_norm=False, pretrained="IMAGENET1K_V1"),
                                              lambda: ShuffleNetV2(pretrained=True)])
def test_failed_download_says_how_to_place_the_file(build_pretrained, monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(PretrainedWeightsError, match=r"no network.*download https://download\.pytorch\.org/.*"
                                                     r"checkpoints/.*pretrained=false"):
        build_pretrained()


BACKBONE_CONFIGS = sorted((CONFIG_DIR / "model" / "backbone").glob("*.yaml"))


@pytest.mark.parametrize("path", [pytest.param(p, marks=needs_timm) if p.stem == "timm" else p
                                  for p in BACKBONE_CONFIGS], ids=[p.stem for p in BACKBONE_CONFIGS])
def test_config_lists_every_argument_and_plugs_into_the_fpn(path):
    cfg = OmegaConf.load(path)
    cls = get_class(cfg._target_)
    assert set(cfg) - {"_target_"} == set(inspect.signature(cls).parameters)
    with torch.device("meta"):  # shapes only: builds and runs in milliseconds even for ResNet-152
        net = instantiate(cfg).eval()
        assert net.strides == [8, 16, 32]
        fpn = FPN(in_channels=net.out_channels, out_channels=16, num_outs=5, in_strides=net.strides)
        outs = fpn(net(torch.zeros(1, 3, 64, 64)))
    assert fpn.strides == [8, 16, 32, 64, 128]
    assert [o.shape[-1] for o in outs] == [8, 4, 2, 1, 1]


def test_every_backbone_has_a_config():
    targets = {OmegaConf.load(p)._target_.rsplit(".", 1)[1] for p in BACKBONE_CONFIGS}
    assert {"ResNet", "VGG", "MobileNetV2", "MobileNetV3", "ShuffleNetV2", "SEResNet", "TimmBackbone"} <= targets
    assert {"mobilenet_v3", "resnext50", "resnet152", "se_resnet50", "vgg16_bn", "shufflenet_v2", "timm"} <= {
        p.stem for p in BACKBONE_CONFIGS}


def random_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """A stand-in for torchvision's checkpoint of `arch`: its keys and shapes, random values."""
    with torch.device("meta"):
        shapes = getattr(models, arch)().state_dict()
    torch.manual_seed(1)
    # VGG's classifier tensors (up to 103 M values) are views of one zero: cheap, and never compared
    return {k: torch.randn(v.shape) if v.is_floating_point() and v.numel() < 2**20 else
            torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in shapes.items()}


@pytest.mark.parametrize("build_pretrained,arch", [
    (lambda: ResNet(depth=18, out_indices=(1, 2, 3, 4), pretrained=True), "resnet18"),
    (lambda: VGG(depth=11, batch_norm=False, pretrained=True), "vgg11"),
    (lambda: MobileNetV2(pretrained="IMAGENET1K_V2"), "mobilenet_v2"),
    (lambda: MobileNetV3(pretrained=True), "mobilenet_v3_large"),
    (lambda: MobileNetV3(variant="small", pretrained=True), "mobilenet_v3_small"),
    (lambda: ShuffleNetV2(width_mult=0.5, pretrained=True), "shufflenet_v2_x0_5"),
], ids=["resnet18", "vgg11", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v2_x0_5"])
def test_pretrained_loads_torchvisions_checkpoint_as_it_is(build_pretrained, arch, monkeypatch):
    checkpoint = random_state_dict(arch)
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", lambda url, *a, **k: checkpoint)
    net = build_pretrained()
    renamed = {"stem.0.": "conv1.", "stem.1.": "bn1."}  # ResNet keeps its stem in one Sequential
    for key, value in net.state_dict().items():
        tv_key = next((new + key[len(old):] for old, new in renamed.items() if key.startswith(old)), key)
        assert torch.equal(value, checkpoint[tv_key]), key
