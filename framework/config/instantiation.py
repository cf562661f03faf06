"""Which `_target_`s a config may instantiate: an allow-list of module prefixes, checked before anything is imported.

`hydra.utils.instantiate` imports and calls whatever a config names, so a config from a stranger (a shared YAML
file, or the config saved inside a downloaded checkpoint) could name `os.system` or `builtins.eval`. Every config is
checked here before instantiation: the dotted name must start with an allowed prefix (checked on the string, before
the import, because importing a module already runs its code), and the object it resolves to must live in an
allowed module too (`torch.os.system` starts with `torch.` but is `os.system`). A few callables inside the allowed
packages that read or write arbitrary files or fetch and run code (`torch.hub.load`, `torch.load`, `torch.save`, …)
are refused as well.

Users extend the list with the `allow_targets` setting (`allow_targets=[mypackage.]`); a checkpoint's saved config
never extends it: tools that evaluate a checkpoint take `allow_targets` from the command line only.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterable, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

from framework.config.validation import ConfigError, locate

DEFAULT_PREFIXES: tuple[str, ...] = ("framework.", "torch.", "torchvision.", "timm.")

# Inside the allowed packages: callables that load pickles or native code, fetch code from the network, or write
# files where a config says. Matched as prefixes of the dotted name and of the resolved `module.qualname`.
DENIED: tuple[str, ...] = (
    "torch.hub.", "torch.load", "torch.save", "torch.serialization.", "torch.package.", "torch.jit.load",
    "torch.jit.save", "torch.utils.cpp_extension.", "torch.utils.model_zoo.", "torch.ops.load_library",
    "torch.classes.load_library", "torch._", "torch.distributed.rpc.", "torch.multiprocessing.", "torch.utils.hooks.",
    "torch.onnx.", "torch.export.save", "torch.export.load", "torchvision.io.write",
    "torchvision.io.encode", "torchvision.utils.save_image", "torchvision.datasets.utils.", "timm.models.load_",
    "timm.models._hub.", "framework.fileio.", "framework.engine.checkpoint.",
)

_HINT = ("If you trust this config, allow the module on the command line: allow_targets=[{module}.] "
         "(allowed: {allowed}).")


def allowed_prefixes(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The default prefixes plus the user's, each ending in '.' (so `mypkg` does not also allow `mypkg_evil`)."""
    out = list(DEFAULT_PREFIXES)
    for prefix in extra or ():
        prefix = str(prefix).strip()
        if not prefix or prefix == ".":
            raise ConfigError("allow_targets entries must be module names such as mypackage. (got an empty one).")
        out.append(prefix if prefix.endswith(".") else prefix + ".")
    return tuple(out)


def _matches(name: str, prefixes: Iterable[str]) -> bool:
    return any(name.startswith(p) or name + "." == p for p in prefixes)


def _denied(name: str) -> bool:
    return any(name.startswith(d) for d in DENIED)


def _resolved_name(obj: Any) -> str | None:
    """`module.qualname` of what a dotted path resolved to (None for objects that carry no module, e.g. some
    builtins defined in C, which are then judged by the path they were reached through)."""
    if inspect.ismodule(obj):
        return obj.__name__
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        return None
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"{module}.{qualname}" if isinstance(qualname, str) else module


def check_target(target: Any, key: str, prefixes: tuple[str, ...]) -> None:
    """Refuse `target` (the value of `key`) unless it is a dotted name inside the allow-list."""
    allowed = ", ".join(prefixes)
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"'{key}' must be the dotted name of a class or function, got {target!r}.")
    module = target.rpartition(".")[0] or target
    if not _matches(target, prefixes):
        raise ConfigError(f"'{key}' names '{target}', which is outside the modules a config may instantiate; "
                          f"refused before importing it. " + _HINT.format(module=module.split(".")[0], allowed=allowed))
    if _denied(target):
        raise ConfigError(f"'{key}' names '{target}', which reads or writes files or loads code; a config may not "
                          "instantiate it.")
    try:
        obj = locate(target)
    except Exception:
        return  # not importable: check_components reports it with a suggestion
    resolved = _resolved_name(obj)
    if resolved is not None and (not _matches(resolved, prefixes) or _denied(resolved)):
        raise ConfigError(f"'{key}' names '{target}', which is really '{resolved}', outside the modules a config may "
                          f"instantiate; refused. " + _HINT.format(module=resolved.split(".")[0], allowed=allowed))


def _targets(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every `_target_` below `node` with its dotted key, resolving only the `_target_` values themselves: an
    interpolated section is checked where it points, a missing (`???`) one has nothing to check yet."""
    if isinstance(node, (DictConfig, ListConfig)):
        dict_node = isinstance(node, DictConfig)
        for key in node.keys() if dict_node else range(len(node)):
            if OmegaConf.is_missing(node, key):
                continue
            full = (f"{path}.{key}" if path else str(key)) if dict_node else f"{path}[{key}]"
            if key == "_target_" and dict_node:
                yield full, node[key]
            elif not OmegaConf.is_interpolation(node, key) and isinstance(node[key], (DictConfig, ListConfig)):
                yield from _targets(node[key], full)
    elif isinstance(node, dict):
        for key, child in node.items():
            full = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield full, child
            else:
                yield from _targets(child, full)
    elif isinstance(node, (list, tuple)):
        for i, child in enumerate(node):
            yield from _targets(child, f"{path}[{i}]")


def check_targets(cfg: Any, extra: Iterable[str] | None = None, path: str = "") -> None:
    """Check every `_target_` in `cfg` (skipping Hydra's own `hydra` node, which we never instantiate).

    `extra` defaults to the root config's `allow_targets`."""
    if extra is None:
        extra = _allow_setting(cfg)
    prefixes = allowed_prefixes(extra)
    for key, target in _targets(cfg, path):
        if key == "hydra" or key.startswith("hydra."):
            continue
        check_target(target, key, prefixes)


def _allow_setting(cfg: Any) -> list[str]:
    """`allow_targets` of the root config that `cfg` belongs to (a tool instantiates sub-nodes such as cfg.model)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        # an interpolation is resolved from the root config, so a throwaway child of `cfg` reads the root's key
        probe = OmegaConf.create({"allow": "${oc.select:allow_targets,null}"}, parent=cfg)
        try:
            value = probe.allow
        except Exception:  # the root is a list, or its allow_targets does not resolve: nothing extra is allowed
            return []
        items = OmegaConf.to_container(value, resolve=True) if isinstance(value, ListConfig) else [value]
    elif isinstance(cfg, dict):
        items = cfg.get("allow_targets") or []
    else:
        return []
    return [str(v) for v in items if v is not None]


def _key_of(node: Any) -> str:
    """The dotted key of a config node within its root (for messages)."""
    if isinstance(node, (DictConfig, ListConfig)):
        try:
            # private: no public OmegaConf API gives a node's key within its root; it only names the key in messages
            return node._get_full_key(None) or ""
        except Exception:
            return ""
    return ""


def instantiate(node: Any, *args: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate` after checking every `_target_` of `node` (and of config-valued keyword
    arguments) against the allow-list of its root config."""
    from hydra.utils import instantiate as hydra_instantiate

    extra = _allow_setting(node)
    check_targets(node, extra, path=_key_of(node))
    for name, value in kwargs.items():
        if isinstance(value, (DictConfig, ListConfig, dict, list)):
            check_targets(value, extra, path=name)
    return hydra_instantiate(node, *args, **kwargs)


__all__ = ["DEFAULT_PREFIXES", "DENIED", "allowed_prefixes", "check_target", "check_targets", "instantiate"]
