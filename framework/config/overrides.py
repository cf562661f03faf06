"""Command-line overrides: Hydra's parse of them, and applying them to the config saved in a checkpoint.

The checkpoint's config is what the model was trained with; only what the user names on the command line is
taken from the freshly composed config: a whole subtree for a group choice (`dataset=coco`, `model/backbone=…`),
one value for a key (`dataset.root=/data/coco`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from framework.config import CONFIG_DIR
from framework.config.validation import is_group

# keys that belong to the evaluation run itself, never to the saved training config; `allow_targets` in particular
# is the user's trust decision, which a checkpoint's saved config must not make for them
_OWN_KEYS = ("checkpoint", "work_dir", "experiment_name", "allow_targets")


def parse_overrides(overrides: Sequence[str]) -> list[Any]:
    """Hydra's own parse of command-line overrides (key, value, sweep, `+`/`~` prefix), raising on bad grammar.

    Private API (Hydra's override parser), the one home of its use: Hydra exposes the override grammar only to its
    plugins, and re-implementing it would drift from what `hydra.main` accepts."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def run_dir_of(checkpoint: str) -> str:
    """The training run folder of a checkpoint: `<run>/checkpoints/best.pth` → `<run>`."""
    parent = Path(checkpoint).expanduser().parent
    return str(parent.parent if parent.name == "checkpoints" else parent)


def with_new_settings(saved: DictConfig) -> DictConfig:
    """Fill in the settings added to the schema since the checkpoint was written (e.g. `dataset.metric`,
    `evaluation`), with their defaults, so older checkpoints still evaluate. Components are left as saved."""
    from framework.config.schema import TrainConfig

    merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
    return OmegaConf.create(OmegaConf.to_container(merged, resolve=False))  # untyped again, as it was saved


def merge_saved_config(saved: dict[str, Any], composed: DictConfig, overrides: Sequence[str]) -> DictConfig:
    cfg = with_new_settings(OmegaConf.create(saved))
    for o in parse_overrides(overrides):
        key = o.key_or_group
        if key.startswith("hydra") or key in _OWN_KEYS:
            continue
        path = key.replace("/", ".") if is_group(CONFIG_DIR, key) or "/" in key else key
        if o.is_delete():
            parent, _, leaf = path.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if isinstance(node, DictConfig) and leaf in node:
                node.pop(leaf)
            continue
        value = OmegaConf.select(composed, path, throw_on_missing=False)
        if isinstance(value, (DictConfig,)) or OmegaConf.is_list(value):
            value = OmegaConf.to_container(value, resolve=False)
        OmegaConf.update(cfg, path, value, merge=False, force_add=True)
    for key in _OWN_KEYS:
        cfg[key] = composed[key]
    return cfg
