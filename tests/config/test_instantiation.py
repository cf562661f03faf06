"""`_target_` allow-list: a config can only instantiate framework/torch/torchvision/timm objects, or modules the user
allows explicitly; checked before anything is imported."""
from __future__ import annotations

import sys

import pytest
from omegaconf import OmegaConf

from framework.config.instantiation import allowed_prefixes, check_targets, instantiate
from framework.config.validation import ConfigError


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "subprocess.run", "subprocess.Popen", "posix.system",
                                    "importlib.import_module", "pickle.loads"])
def test_targets_outside_the_allow_list_are_refused(target):
    cfg = OmegaConf.create({"model": {"backbone": {"_target_": target, "command": "touch pwned"}}})
    with pytest.raises(ConfigError, match=rf"'model\.backbone\._target_' names '{target}', which is outside"):
        check_targets(cfg)


@pytest.mark.parametrize("target", ["torch.os.system", "torch.nn.modules.module.functools.partial",
                                    "framework.config.instantiation.inspect.getsource"])
def test_a_path_through_an_allowed_package_is_judged_by_what_it_resolves_to(target):
    with pytest.raises(ConfigError, match="which is really '(posix|functools|inspect)\\."):
        check_targets(OmegaConf.create({"x": {"_target_": target}}))


@pytest.mark.parametrize("target", ["torch.hub.load", "torch.load", "torch.save", "torch.jit.load",
                                    "torch.utils.cpp_extension.load", "torchvision.utils.save_image",
                                    "torch._C._set_print_stack_traces_on_fatal_signal"])
def test_file_and_code_loading_callables_inside_torch_are_refused(target):
    with pytest.raises(ConfigError, match="reads or writes files or loads code"):
        check_targets(OmegaConf.create({"x": {"_target_": target}}))


def test_nested_targets_in_lists_are_checked():
    cfg = OmegaConf.create({"pipeline": {"train": {"_target_": "framework.data.transforms.Pipeline",
                                                   "transforms": [{"_target_": "torchvision.transforms.v2.ToImage"},
                                                                  {"_target_": "os.system"}]}}})
    with pytest.raises(ConfigError, match=r"'pipeline\.train\.transforms\[1\]\._target_'"):
        check_targets(cfg)


def test_refused_before_the_module_is_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = OmegaConf.create({"thing": {"_target_": "evil_module.Thing"}})
    with pytest.raises(ConfigError, match="refused before importing it.*allow_targets=\\[evil_module\\.\\]"):
        instantiate(cfg.thing)
    assert not marker.exists() and "evil_module" not in sys.modules


def test_allow_targets_extends_the_list_exactly(tmp_path, monkeypatch):
    (tmp_path / "mypkg.py").write_text("class Thing:\n    def __init__(self, n=1):\n        self.n = n\n")
    (tmp_path / "mypkg_evil.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = OmegaConf.create({"allow_targets": ["mypkg"], "thing": {"_target_": "mypkg.Thing", "n": 3},
                            "other": {"_target_": "mypkg_evil.Thing"}})
    assert instantiate(cfg.thing).n == 3  # the root's allow_targets applies to a sub-node
    with pytest.raises(ConfigError, match="mypkg_evil.Thing"):  # 'mypkg' does not allow 'mypkg_evil'
        check_targets(cfg)
    assert allowed_prefixes(["mypkg"])[-1] == "mypkg."
    with pytest.raises(ConfigError, match="module names"):
        allowed_prefixes([""])
# every shipped config option passes the allow-list: tests/config/test_configs.py composes each through
# check_overrides, which runs check_targets
