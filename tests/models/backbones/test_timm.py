import sys
from importlib.util import find_spec

import pytest
import torch

from framework.models.backbones import PretrainedWeightsError, ResNet, TimmBackbone, TimmNotInstalledError


def test_error_without_timm_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail as if it were not installed
    with pytest.raises(TimmNotInstalledError, match=r'pip install "framework\[timm\]"') as info:
        TimmBackbone(model_name="resnet18")
    assert isinstance(info.value, ImportError) and "pip install timm" in str(info.value)


needs_timm = pytest.mark.skipif(find_spec("timm") is None, reason="timm is not installed")


@needs_timm
def test_resnet18_features():
    net = TimmBackbone(model_name="resnet18").eval()
    assert net.out_channels == [128, 256, 512] and net.strides == [8, 16, 32] and net.out_indices == (2, 3, 4)
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(128, 8, 12), (256, 4, 6), (512, 2, 3)]
    # timm's resnet18 trunk is torchvision's, parameter for parameter; later stages are not built
    assert sum(p.numel() for p in net.parameters()) == 11_176_512
    with torch.device("meta"):
        assert sum(p.numel() for p in TimmBackbone(out_indices=(1, 2)).parameters()) == sum(
            p.numel() for p in ResNet(depth=18, out_indices=(1, 2)).parameters())


@needs_timm
def test_out_indices_are_timm_feature_levels():
    with torch.device("meta"):
        assert TimmBackbone(out_indices=(0, 1, 2, 3, 4)).strides == [2, 4, 8, 16, 32]
        assert TimmBackbone(model_kwargs={"output_stride": 16}).strides == [8, 16, 16]
    # the default, the last three levels, is strides 8/16/32 also where a model has 4 levels
    convnext = TimmBackbone(model_name="convnext_atto")  # (not on meta: timm 0.9 reads tensors while building it)
    assert convnext.strides == [8, 16, 32] and convnext.out_indices == (1, 2, 3)


def trainable(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@needs_timm
@pytest.mark.parametrize("frozen", [0, 1, 2, 3, 4])
def test_frozen_stages_freeze_the_same_parameters_as_resnet(frozen):
    """Level k of timm's resnet18 is ResNet's stage k (level 0 = conv1/bn1, level 1 = layer1, ...)."""
    with torch.device("meta"):
        ours = TimmBackbone(frozen_stages=frozen)
        ref = ResNet(depth=18, frozen_stages=frozen)
    assert trainable(ours) == trainable(ref) < sum(p.numel() for p in ours.parameters())


@needs_timm
def test_frozen_stages_on_an_efficientnet():
    net = TimmBackbone(model_name="efficientnet_b0", frozen_stages=1).train()
    frozen = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else "")
              for n, p in net.body.named_parameters() if not p.requires_grad}
    assert frozen == {"conv_stem", "bn1", "blocks.0", "blocks.1"}
    assert not net.body.blocks[1].training and net.body.blocks[2].training


@needs_timm
def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match=r"Unknown timm model 'resnet19'\. Did you mean .*'resnet18'"):
        TimmBackbone(model_name="resnet19")
    with pytest.raises(ValueError, match=r"do not fit timm model 'convnext_atto', which has 4 feature levels .* "
                                         r"\[4, 8, 16, 32\]"):
        TimmBackbone(model_name="convnext_atto", out_indices=(2, 3, 4))
    with pytest.raises(ValueError, match=r"frozen_stages must be in -1..4"):
        TimmBackbone(frozen_stages=5)


@needs_timm
def test_failed_download_is_a_pretrained_weights_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("timm.models._builder.load_pretrained", offline)
    with pytest.raises(PretrainedWeightsError, match=r"'resnet18': no network\. Without internet.*pretrained=false"):
        TimmBackbone(pretrained=True)
