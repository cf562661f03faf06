"""One home per idea in the config layer: the tool configs are configs/train.yaml plus their own keys, and the
config code keeps off Hydra's and OmegaConf's private API."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from framework.config import CONFIG_DIR
from framework.config.cli import check_overrides
from framework.config.schema import TOOL_SCHEMAS
from framework.config.validation import ConfigError

REPO = Path(__file__).resolve().parents[2]
REQUIRED = {"test": ["checkpoint=x"], "infer": ["checkpoint=x", "input=y"], "export": ["checkpoint=x"],
            "eval_results": ["results=r.json"], "plot_run": ["run_dir=d"]}
SHARED_KEYS = ("seed", "deterministic", "work_dir", "resume")


@pytest.mark.parametrize("tool", sorted(TOOL_SCHEMAS))
def test_tool_config_is_train_plus_its_own_keys(tool):
    raw = yaml.safe_load((CONFIG_DIR / f"{tool}.yaml").read_text())
    assert raw["defaults"][:3] == ["train", f"{tool}_schema", "_self_"]
    assert all(isinstance(d, dict) and next(iter(d)).startswith("override hydra/") for d in raw["defaults"][3:])
    assert not set(raw) & set(SHARED_KEYS), "shared settings live in configs/train.yaml"
    assert not {"job", "job_logging", "sweep"} & set(raw.get("hydra", {})), "so does the hydra: block"

    overrides = ["model/backbone=resnet18", "trainer.max_epochs=3", "seed=7"]
    train = check_overrides("train", overrides)
    cfg = check_overrides(tool, [*REQUIRED.get(tool, []), *overrides])
    assert OmegaConf.get_type(cfg) is TOOL_SCHEMAS[tool]
    train, tool_cfg = (OmegaConf.to_container(c, resolve=False) for c in (train, cfg))
    assert {k: v for k, v in tool_cfg.items() if k in train and k != "experiment_name"} == \
        {k: v for k, v in train.items() if k != "experiment_name"}


def test_tool_keys_are_typed_and_defaulted_by_the_schema():
    cfg = check_overrides("export", ["checkpoint=x"])
    assert cfg.nms is True and cfg.opset == 18 and list(cfg.input_size) == [640, 640]
    with pytest.raises(ConfigError, match="'opset'"):
        check_overrides("export", ["checkpoint=x", "opset=abc"])
    with pytest.raises(ConfigError, match="Did you mean 'score_thr'"):
        check_overrides("infer", ["checkpoint=x", "input=y", "score_th=0.5"])
    with pytest.raises(ConfigError, match="needs a value for 'checkpoint'"):
        check_overrides("test", [])


def test_an_experiment_reaches_the_tools():
    cfg = check_overrides("analyze", ["experiment=shapes_demo"])
    assert cfg.model == check_overrides("train", ["experiment=shapes_demo"]).model
    assert cfg.experiment_name == "analyze"  # the tool's own name wins over the experiment's


# `<expr>._name` (not self._…), hydra._internal, omegaconf._<module>, and hydra.core.* other than the documented
# HydraConfig / ConfigStore / GlobalHydra. The few left each say in a comment why no public API does it.
PRIVATE = re.compile(r"(?<!self)(?<=[\w)\]])\._(?!target_\b|hub\b)[a-z]\w*|hydra\._internal|omegaconf\._\w+|"
                     r"hydra\.core\.(?!hydra_config|config_store|global_hydra)\w+")


def test_config_code_keeps_off_private_hydra_and_omegaconf_api():
    files = sorted((REPO / "framework" / "config").glob("*.py")) + sorted((REPO / "tools").glob("*.py"))
    uses = [f"{p.relative_to(REPO)}:{n}" for p in files for n, line in enumerate(p.read_text().splitlines(), 1)
            if PRIVATE.search(line)]
    assert len(uses) <= 5, uses
