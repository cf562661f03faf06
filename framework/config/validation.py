"""Turn Hydra/OmegaConf composition failures into one-paragraph messages, and check component nodes.

Hydra already refuses unknown keys (struct mode) and OmegaConf refuses wrongly typed values for schema fields, but
their messages are spread over several lines with a traceback and never suggest the key that was meant. Here we
diagnose the failure from the overrides themselves and add "did you mean …".
"""
from __future__ import annotations

import collections.abc
import difflib
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

_SPECIAL_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
_SEQUENCE_ORIGINS = (list, tuple, collections.abc.Sequence)


class ConfigError(ValueError):
    """A mistake in the config or the command line, explained in one paragraph."""


def did_you_mean(word: str, candidates: Iterable[str], prefix: str = "") -> str:
    """' Did you mean '<prefix><closest>'?' or '' when nothing is close."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{prefix}{match[0]}'?" if match else ""


def group_options(config_dir: Path, group: str) -> list[str]:
    """The options of a config group: YAML files in its folder, plus structured configs stored under it."""
    from hydra.core.config_store import ConfigStore

    folder = config_dir / group
    names = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    node: Any = ConfigStore.instance().repo
    for part in group.split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    names |= {k[:-5] for k in node if isinstance(k, str) and k.endswith(".yaml")} if isinstance(node, dict) else set()
    return sorted(names)


def is_group(config_dir: Path, key: str) -> bool:
    return "." not in key and (config_dir / key).is_dir()


def _select_parent(cfg: DictConfig, path: Sequence[str]) -> tuple[Any, int]:
    """Walk `path` as far as it exists; return the last node reached and how many parts were found."""
    node: Any = cfg
    for depth, part in enumerate(path):
        if isinstance(node, DictConfig) and part in node.keys():  # `in node` is False for a `???` value
            node = node._get_node(part)
            node = node if isinstance(node, (DictConfig, ListConfig)) else None
            if node is None:
                return None, depth + 1
        else:
            return node, depth
    return node, len(path)


def unknown_key_message(cfg: DictConfig, key: str, override: str, where: str = "the command line") -> str | None:
    """If `key` (dotted) is not in `cfg`, explain which part is unknown and suggest the closest existing key."""
    parts = key.split(".")
    parent, found = _select_parent(cfg, parts)
    if found == len(parts):
        return None
    prefix = ".".join(parts[:found])
    missing = parts[found]
    if not isinstance(parent, DictConfig):
        return f"'{key}' cannot be set: '{prefix}' is a value, not a section (from {override!r} on {where})."
    keys = [str(k) for k in parent.keys()]
    hint = did_you_mean(missing, keys, prefix=f"{prefix}." if prefix else "")
    shown = ", ".join(sorted(k for k in keys if k not in _SPECIAL_KEYS))
    section = f"'{prefix}'" if prefix else "the top level"
    return (f"Unknown config key '{prefix + '.' if prefix else ''}{missing}' (from {override!r} on {where}).{hint} "
            f"Keys available in {section}: {shown}. To add a new key on purpose, prefix the override with '+'.")


def missing_keys(cfg: DictConfig | ListConfig, path: str = "") -> list[str]:
    """Keys still set to `???`, found without resolving interpolations (which may need Hydra's runtime)."""
    out: list[str] = []
    items = cfg.items_ex(resolve=False) if isinstance(cfg, DictConfig) else enumerate(cfg._iter_ex(resolve=False))
    for key, _ in items:
        node = cfg._get_node(key)
        full = f"{path}.{key}" if path else str(key)
        if node._is_missing():
            out.append(full)
        elif isinstance(node, (DictConfig, ListConfig)) and not node._is_none() and not node._is_interpolation():
            out.extend(missing_keys(node, full))
    return out


# ----------------------------------------------------------------------------------------------- component nodes


def _locate(path: str) -> Any:
    from hydra._internal.utils import _locate as hydra_locate  # get_object() would also log the failure

    return hydra_locate(path)


def _scalar_ok(value: Any, hint: Any) -> bool | None:
    """True/False when a YAML value (scalar, list or None) clearly fits / does not fit a type hint; None when the
    hint is too loose to tell (Any, unannotated, a TypeVar, a generic other than a sequence)."""
    if hint in (Any, inspect.Parameter.empty) or isinstance(hint, (typing.TypeVar, str)):
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        answers = [_scalar_ok(value, arg) for arg in typing.get_args(hint)]
        if True in answers:
            return True
        return None if None in answers else False
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if value is None:
        return hint is type(None)
    if origin is not None:
        return isinstance(value, (list, tuple)) if origin in _SEQUENCE_ORIGINS else None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if not isinstance(hint, type):
        return None
    if isinstance(value, (list, tuple)):
        return issubclass(hint, (list, tuple)) or None
    # a YAML scalar is an instance of a builtin type; it can never be e.g. a Tensor or a Module
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# Blocks of framework settings inside a component node, taken out before the node is instantiated (the optimizer's
# per-parameter settings and the linear scaling rule, see framework/engine/optim.py), with the keys each accepts.
SETTINGS_BLOCKS: dict[str, dict[str, tuple[str, ...]]] = {
    "optimizer": {"paramwise": ("norm_decay_mult", "bias_decay_mult", "lr_mult", "decay_mult"),
                  "auto_scale_lr": ("base_batch_size",)},
}


def _check_settings_blocks(cfg: DictConfig, path: str) -> None:
    for block, allowed in SETTINGS_BLOCKS.get(path, {}).items():
        node = cfg._get_node(block) if block in cfg else None
        if node is None or node._is_none():
            continue
        if not isinstance(node, DictConfig):
            raise ConfigError(f"'{path}.{block}' must be a mapping of {', '.join(allowed)}.")
        for key in node.keys():
            if key not in allowed:
                raise ConfigError(f"'{path}.{block}.{key}' is not a setting.{did_you_mean(str(key), allowed)} "
                                  f"The settings of {path}.{block} are: {', '.join(allowed)}.")


def check_components(cfg: DictConfig, path: str = "") -> None:
    """Check every node with a `_target_`: importable, keys are arguments, scalar values fit the annotations."""
    if isinstance(cfg, ListConfig):
        for i, item in enumerate(cfg):
            if isinstance(item, (DictConfig, ListConfig)):
                check_components(item, f"{path}[{i}]")
        return
    if not isinstance(cfg, DictConfig):
        return
    target = cfg.get("_target_") if "_target_" in cfg and not OmegaConf.is_missing(cfg, "_target_") else None
    if isinstance(target, str):
        _check_settings_blocks(cfg, path)
        _check_target(cfg, target, path)
    for key in cfg.keys():
        if key in SETTINGS_BLOCKS.get(path, {}):
            continue
        node = cfg._get_node(key)
        if isinstance(node, (DictConfig, ListConfig)) and not node._is_missing() and not node._is_none():
            check_components(node, f"{path}.{key}" if path else str(key))


def _check_target(cfg: DictConfig, target: str, path: str) -> None:
    where = f"'{path}._target_'" if path else "'_target_'"
    try:
        obj = _locate(target)
    except Exception:
        module, _, name = target.rpartition(".")
        hint = ""
        try:
            mod = _locate(module)
            hint = did_you_mean(name, [n for n in dir(mod) if not n.startswith("_")], prefix=f"{module}.")
        except Exception:
            pass
        raise ConfigError(f"{where} names '{target}', which cannot be imported.{hint}") from None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except Exception:
        hints = {}
    names = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    for key in cfg.keys():
        key = str(key)
        if key in _SPECIAL_KEYS or key in SETTINGS_BLOCKS.get(path, {}):
            continue
        full = f"{path}.{key}" if path else key
        if key not in params and not takes_kwargs:
            raise ConfigError(
                f"'{full}' is not an argument of {target}.{did_you_mean(key, names, prefix=f'{path}.' if path else '')} "
                f"Its arguments are: {', '.join(names)}."
            )
        if key not in params or OmegaConf.is_interpolation(cfg, key) or OmegaConf.is_missing(cfg, key):
            continue
        node = cfg._get_node(key)
        if isinstance(node, DictConfig):
            continue
        value = OmegaConf.to_container(node) if isinstance(node, ListConfig) else node._value()
        hint = hints.get(key, params[key].annotation)
        if _scalar_ok(value, hint) is False:
            raise ConfigError(
                f"'{full}' is {value!r} ({type(value).__name__}), but {target} expects {_type_name(hint)} for "
                f"'{key}'. Fix the value in the YAML file or the override."
            )
    if not cfg.get("_partial_", False):
        missing = [n for n, p in params.items() if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                   and n not in cfg and not (n == "self")]
        if missing:
            raise ConfigError(f"{where}: {target} needs the argument(s) {', '.join(missing)}, which '{path}' does not set.")
