"""Config schemas, validation and the Hydra command-line entry used by `tools/`."""
from __future__ import annotations

import os
from pathlib import Path

from framework.config.schema import register_schemas

CONFIG_DIR = Path(os.environ.get("FRAMEWORK_CONFIG_DIR", Path(__file__).resolve().parents[2] / "configs"))

register_schemas()

__all__ = ["CONFIG_DIR"]


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    from framework.config.overrides import run_dir_of

    if not OmegaConf.has_resolver("run_dir_of"):  # tool configs: their run folder next to the checkpoint's run
        OmegaConf.register_new_resolver("run_dir_of", run_dir_of)
    if not OmegaConf.has_resolver("first_set"):  # configs/infer.yaml: hydra.run.dir is `output` when one is given
        OmegaConf.register_new_resolver("first_set", lambda *values: next((v for v in values if v is not None), None))


_register_resolvers()
