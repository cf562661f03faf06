"""Build the optimizer from its config node: per-parameter groups and the linear scaling rule.

The `optimizer` node is a `_partial_: true` torch optimizer plus two blocks of framework settings
(`OPTIMIZER_SETTINGS`) that torch does not know about, so `split_optimizer_node` takes them out before the node is
instantiated. Detection recipes (mmdetection's `paramwise_cfg`, detectron2's `get_default_optimizer_params`) do not
decay normalization layers and biases: decaying a norm layer's scale only fights its normalization, and biases do not
overfit; and fine-tuning often trains a pretrained backbone at a fraction of the head's lr (`lr_mult`).
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Callable, Mapping

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from framework.config.validation import ConfigError

OPTIMIZER_SETTINGS = ("paramwise", "auto_scale_lr")
NORM_TYPES = (_NormBase, _BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def is_norm(module: nn.Module) -> bool:
    """Normalization layers by type, and by class name for those outside torch (timm's LayerNorm2d, RMSNorm…)."""
    name = type(module).__name__
    return isinstance(module, NORM_TYPES) or name.endswith("Norm") or "BatchNorm" in name


def _longest_prefix(name: str, table: Mapping[str, float]) -> str | None:
    """The longest key of `table` that is `name` or a dotted prefix of it ("backbone" matches "backbone.x", not
    "backbone2.x")."""
    keys = [k for k in table if name == k or name.startswith(k + ".")]
    return max(keys, key=len) if keys else None


def _check_mults(model: nn.Module, names: list[str], **tables: Mapping[str, float]) -> None:
    """A key that matches nothing is almost always a typo, which would otherwise silently train at the wrong lr."""
    top = ", ".join(name for name, _ in model.named_children()) or "(none)"
    for table_name, table in tables.items():
        for key, mult in table.items():
            if mult < 0:
                raise ConfigError(f"optimizer.paramwise.{table_name}[{key!r}] must be >= 0, got {mult}")
            if not any(n == key or n.startswith(key + ".") for n in names):
                raise ConfigError(f"optimizer.paramwise.{table_name} key {key!r} matches no parameter; parameter names "
                                  f"start with the top-level modules: {top}")


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    norm_decay_mult: float = 0.0,
    bias_decay_mult: float = 0.0,
    lr_mult: Mapping[str, float] | None = None,
    decay_mult: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Split the trainable parameters into optimizer groups with their own lr and weight decay.

    Normalization layers' parameters get `weight_decay × norm_decay_mult`, other biases `weight_decay ×
    bias_decay_mult`; `lr_mult` / `decay_mult` map a parameter-name prefix (e.g. `{"backbone": 0.1}`, the longest
    matching key wins) to a multiplier of the lr / weight decay. Parameters with the same (lr, weight decay) share a
    group, the groups in order of their first parameter in `model.named_parameters()`, so that a resumed optimizer
    state lines up with the same groups. Each group also carries `lr_mult` and a readable `name` (torch keeps extra
    keys of a group).
    """
    lr_mult, decay_mult = dict(lr_mult or {}), dict(decay_mult or {})
    if norm_decay_mult < 0 or bias_decay_mult < 0:
        raise ConfigError(f"optimizer.paramwise.norm_decay_mult and bias_decay_mult must be >= 0, got "
                          f"{norm_decay_mult}, {bias_decay_mult}")
    named = list(model.named_parameters())  # each shared parameter once, under its first name
    _check_mults(model, [n for n, _ in named], lr_mult=lr_mult, decay_mult=decay_mult)
    norm_params = {id(p) for m in model.modules() if is_norm(m) for p in m.parameters(recurse=False)}

    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, p in named:
        if not p.requires_grad:
            continue
        kind = "norm" if id(p) in norm_params else "bias" if name == "bias" or name.endswith(".bias") else "weights"
        lr_key, decay_key = _longest_prefix(name, lr_mult), _longest_prefix(name, decay_mult)
        mult = lr_mult[lr_key] if lr_key else 1.0
        wd = weight_decay * {"norm": norm_decay_mult, "bias": bias_decay_mult}.get(kind, 1.0)
        wd *= decay_mult[decay_key] if decay_key else 1.0
        group = groups.setdefault((lr * mult, wd), {"params": [], "lr": lr * mult, "weight_decay": wd,
                                                     "lr_mult": mult, "scopes": [], "kinds": []})
        group["params"].append(p)
        scope = lr_key or decay_key
        for field, value in (("scopes", scope), ("kinds", kind)):
            if value and value not in group[field]:
                group[field].append(value)
    out = []
    for g in groups.values():
        scopes, kinds = "/".join(g.pop("scopes")), "/".join(g.pop("kinds"))
        g["name"] = " ".join(filter(None, [scopes, kinds, "decay" if g["weight_decay"] else "no-decay"]))
        out.append(g)
    return out


def scaled_lr(base_lr: float, global_batch_size: int, base_batch_size: int) -> float:
    """The linear scaling rule (Goyal et al., 2017): the lr a recipe tuned for `base_batch_size` images per step
    needs at `global_batch_size` (per-GPU batch × GPUs × accumulation steps)."""
    for name, value in (("global_batch_size", global_batch_size), ("base_batch_size", base_batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if base_lr < 0:
        raise ValueError(f"base_lr must be >= 0, got {base_lr}")
    return base_lr * global_batch_size / base_batch_size


def _default(cls: Any, name: str, fallback: Any = None) -> Any:
    """The default of `cls`'s argument `name`, or `fallback` (torch once marked a required lr with a sentinel)."""
    try:
        param = inspect.signature(cls).parameters.get(name)
    except (TypeError, ValueError):
        return fallback
    if param is None or not isinstance(param.default, (int, float)) or isinstance(param.default, bool):
        return fallback
    return param.default


def build_optimizer(
    make: Callable[..., torch.optim.Optimizer],
    model: nn.Module,
    norm_decay_mult: float = 0.0,
    bias_decay_mult: float = 0.0,
    lr_mult: Mapping[str, float] | None = None,
    decay_mult: Mapping[str, float] | None = None,
    lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """Call an optimizer partial (`instantiate` of a `_partial_: true` node) with `model`'s parameter groups.

    `lr` and `weight_decay` come from the partial's keywords, else the class defaults; the lr is multiplied by
    `lr_scale` (e.g. from `scaled_lr`) before the groups are made, so every group's lr, and the `initial_lr` a
    scheduler records from it, is scaled.
    """
    if lr_scale <= 0:
        raise ValueError(f"lr_scale must be > 0, got {lr_scale}")
    cls, keywords = getattr(make, "func", make), getattr(make, "keywords", {})
    lr = keywords.get("lr", _default(cls, "lr"))
    if lr is None:
        raise ValueError(f"{getattr(cls, '__name__', cls)} has no default lr; set optimizer.lr")
    weight_decay = keywords.get("weight_decay", _default(cls, "weight_decay", 0.0))
    lr = float(lr) * lr_scale
    groups = param_groups(model, lr, float(weight_decay), norm_decay_mult, bias_decay_mult, lr_mult, decay_mult)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return make(groups, lr=lr)


def split_optimizer_node(node: Mapping[str, Any]) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Split an `optimizer` node into (the node to instantiate, {"paramwise": {...}, "auto_scale_lr": {...}}).

    A DictConfig comes back as a copy with the same parent, so interpolations into the rest of the config (e.g.
    `lr: ${base_lr}`) still resolve when it is instantiated; the settings come back resolved, as plain dicts
    (empty where a block is absent or null).
    """
    if isinstance(node, DictConfig):
        rest = copy.deepcopy(node)  # OmegaConf's deepcopy keeps the parent (tests/engine/test_optim.py checks)
        settings = {k: OmegaConf.to_container(node[k], resolve=True) if node.get(k) is not None else {}
                    for k in OPTIMIZER_SETTINGS}
        with open_dict(rest):
            for key in OPTIMIZER_SETTINGS:
                rest.pop(key, None)
        return rest, settings
    rest = {k: v for k, v in node.items() if k not in OPTIMIZER_SETTINGS}
    return rest, {k: dict(node.get(k) or {}) for k in OPTIMIZER_SETTINGS}
