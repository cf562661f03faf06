"""Turn Hydra/OmegaConf composition failures into one-paragraph messages, and check what composing cannot.

Hydra already refuses unknown keys (struct mode) and OmegaConf refuses wrongly typed values for schema fields, but
their messages are spread over several lines with a traceback and never suggest the key that was meant. Here we
diagnose the failure from the overrides themselves and add "did you mean …". A composed config is then checked
further, each check usable on its own (the trainer may call them on a checkpoint's config too):
`check_interpolations` (every `${…}` resolvable outside Hydra's runtime resolves), `check_components` (every
`_target_` node against its class's signature and type hints) and `check_ranges` (settings and component
arguments within their bounds: SETTING_RANGES, ARGUMENT_RANGES).
"""
from __future__ import annotations

import collections.abc
import difflib
import inspect
import logging
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

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
    try:
        stored = ConfigStore.instance().list(group)
    except OSError:  # nothing stored under this group
        stored = []
    names |= {n[:-5] for n in stored if n.endswith(".yaml")}
    return sorted(names)


_GROUP_NAME = re.compile(r"[A-Za-z_][\w-]*(/[A-Za-z_][\w-]*)*")


def is_group(config_dir: Path, key: str) -> bool:
    """Whether `key` names a config group (a folder of configs/); names that are not plain paths never do, so an
    empty key, '..' or '//' cannot reach outside the config folder."""
    return isinstance(key, str) and bool(_GROUP_NAME.fullmatch(key)) and (config_dir / key).is_dir()


def _select_parent(cfg: DictConfig, path: Sequence[str]) -> tuple[Any, int]:
    """Walk `path` as far as it exists; return the last node reached and how many parts were found (a `???`, an
    interpolation or a plain value on the way ends the walk: none of them is a section one can add keys to)."""
    node: Any = cfg
    for depth, part in enumerate(path):
        if not (isinstance(node, DictConfig) and part in node.keys()):  # `in node` is False for a `???` value
            return node, depth
        if OmegaConf.is_missing(node, part) or OmegaConf.is_interpolation(node, part):
            return None, depth + 1
        node = node[part]
        if not isinstance(node, (DictConfig, ListConfig)):
            return None, depth + 1
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
    return [full for full, parent, key, _ in _walk(cfg, path) if OmegaConf.is_missing(parent, key)]


# ----------------------------------------------------------------------------------------------- component nodes


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


def locate(path: str) -> Any:
    """The object a dotted `_target_` names, found as `hydra.utils.instantiate` finds it (`hydra.utils.get_object`),
    without the error line get_object logs when it is not there: the caller explains that itself."""
    from hydra.utils import get_object

    log, quiet = logging.getLogger("hydra.utils"), _Quiet()
    log.addFilter(quiet)
    try:
        return get_object(path)
    finally:
        log.removeFilter(quiet)


def _scalar_ok(value: Any, hint: Any) -> bool | None:
    """True/False when a YAML value (scalar, list, mapping or None) clearly fits / does not fit a type hint; None
    when the hint is too loose to tell (Any, unannotated, a TypeVar, an unfamiliar generic) or the value is itself a
    component (a mapping with `_target_`, which instantiate builds and which is judged at its own node)."""
    if hint in (Any, inspect.Parameter.empty) or isinstance(hint, (typing.TypeVar, str)):
        return None
    if isinstance(value, dict) and "_target_" in value:
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
        return _generic_ok(value, hint, origin)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if not isinstance(hint, type):
        return None
    if isinstance(value, (list, tuple)):
        return issubclass(hint, (list, tuple)) or isinstance(value, hint)
    # a YAML value is an instance of a builtin type; it can never be e.g. a Tensor, a Module or a callable
    return isinstance(value, hint)


def _generic_ok(value: Any, hint: Any, origin: Any) -> bool | None:
    """`_scalar_ok` for subscripted hints: sequences (element by element), mappings and callables."""
    if origin in _SEQUENCE_ORIGINS:
        return _sequence_ok(value, hint, origin)
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        return isinstance(value, dict)
    if origin is collections.abc.Callable:
        return False  # YAML has no callables; a callable comes from a `_target_` node, handled above
    return None


def _sequence_ok(value: Any, hint: Any, origin: Any) -> bool | None:
    """A list fits `Sequence[T]` / `tuple[T, ...]` when every element fits T, `tuple[A, B]` when it has one
    element per position; a string is not a sequence here (instantiate would pass it through as one)."""
    if not isinstance(value, (list, tuple)):
        return False
    args = typing.get_args(hint)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(value):
            return False
        answers = [_scalar_ok(v, h) for v, h in zip(value, args)]
    else:
        answers = [_scalar_ok(v, args[0]) for v in value] if args else []
    if any(a is False for a in answers):
        return False
    return None if any(a is None for a in answers) else True


def _type_name(hint: Any) -> str:
    """`int`, `Sequence[int]`, `Optional[str]`, `float | torch.Tensor` (a generic's __name__ drops its arguments)."""
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "").replace("collections.abc.", "")


def _bad_element(value: Any, hint: Any) -> int | None:
    """The position of the first element that makes a list fail `hint` (a sequence, or a union with one sequence
    alternative), so the message can point at it rather than print the whole list."""
    if not isinstance(value, list):
        return None
    alternatives = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    sequences = [h for h in alternatives if typing.get_origin(h) in _SEQUENCE_ORIGINS and typing.get_args(h)]
    if len(sequences) != 1 or typing.get_origin(sequences[0]) is tuple:
        return None
    item = typing.get_args(sequences[0])[0]
    return next((i for i, v in enumerate(value) if _scalar_ok(v, item) is False), None)


#: values that may be null while composing because the trainer fills them from the data before building anything
FROM_DATA = ("${dataset.num_classes}",)


def _filled_from_data(cfg: DictConfig, key: str) -> bool:
    return OmegaConf.is_interpolation(cfg, key) and raw_text(cfg, key) in FROM_DATA


def _type_error(cfg: DictConfig, key: str, full: str, value: Any, hint: Any, target: str) -> ConfigError:
    expected = f"{target} expects {_type_name(hint)} for '{key}'"
    index = _bad_element(value, hint)
    if index is None:
        return ConfigError(f"'{full}' is {_clip(repr(value))} ({type(value).__name__}), but {expected}. Fix the value "
                           f"in the YAML file or the override.")
    item, node = value[index], cfg[key]
    interpolated = isinstance(node, ListConfig) and OmegaConf.is_interpolation(node, index)
    source = f" (from {_clip(raw_text(node, index), 60)})" if interpolated else ""
    return ConfigError(f"'{full}.{index}' is {_clip(repr(item))} ({type(item).__name__}){source}, but {expected}. "
                       f"Fix the value in the YAML file or the override.")


# Blocks of framework settings inside a component node, taken out before the node is instantiated (the optimizer's
# per-parameter settings and the linear scaling rule, see framework/engine/optim.py), with the keys each accepts.
SETTINGS_BLOCKS: dict[str, dict[str, tuple[str, ...]]] = {
    "optimizer": {"paramwise": ("norm_decay_mult", "bias_decay_mult", "lr_mult", "decay_mult"),
                  "auto_scale_lr": ("base_batch_size",)},
}


def _check_settings_blocks(cfg: DictConfig, path: str) -> None:
    for block, allowed in SETTINGS_BLOCKS.get(path, {}).items():
        node = _plain_value(cfg, block) if block in cfg else None
        if node is None or node is _UNSET:
            continue
        node = cfg[block]
        if not isinstance(node, DictConfig):
            raise ConfigError(f"'{path}.{block}' must be a mapping of {', '.join(allowed)}.")
        for key in node.keys():
            if key not in allowed:
                raise ConfigError(f"'{path}.{block}.{key}' is not a setting.{did_you_mean(str(key), allowed)} "
                                  f"The settings of {path}.{block} are: {', '.join(allowed)}.")


# Hydra's own keys in a component node, with what each accepts (hydra.utils.instantiate; _convert_ is compared
# case-insensitively with hydra.types.ConvertMode, and an unknown mode is silently treated as none).
_SPECIAL_VALUES: dict[str, tuple[Any, str]] = {
    "_partial_": (lambda v: isinstance(v, bool), "true or false"),
    "_recursive_": (lambda v: isinstance(v, bool), "true or false"),
    "_convert_": (lambda v: isinstance(v, str) and v.lower() in ("none", "partial", "object", "all"),
                  "one of none, partial, object, all"),
    "_args_": (lambda v: isinstance(v, list), "a list of positional arguments"),
}


def _check_special_keys(cfg: DictConfig, path: str) -> None:
    for key, (accepts, expected) in _SPECIAL_VALUES.items():
        value = _plain_value(cfg, key) if key in cfg else _UNSET
        if value is not _UNSET and not accepts(value):
            full = f"{path}.{key}" if path else key
            raise ConfigError(f"'{full}' is {_clip(repr(value))}, but Hydra's {key} must be {expected}.")


# Keys the trainer and the tools instantiate: where a config has them, each must be a component node.
COMPONENT_KEYS = ("model", "dataset.train", "dataset.val", "pipeline.train", "pipeline.val", "optimizer", "scheduler")


def _check_component_keys(cfg: DictConfig) -> None:
    for full in COMPONENT_KEYS:
        parent_key, _, key = full.rpartition(".")
        parent = _section(cfg, parent_key)
        if parent is None or key not in parent.keys():
            continue
        if OmegaConf.is_missing(parent, key) or OmegaConf.is_interpolation(parent, key):
            continue  # `???` is reported by missing_keys; an interpolation where it points
        node = parent[key]
        if not isinstance(node, DictConfig) or "_target_" not in node:
            shown = "null" if node is None else _clip(repr(_plain_value(parent, key)), 80)
            group = full.split(".")[0]
            raise ConfigError(f"'{full}' is {shown}, but it must be a component: a mapping with _target_ and the "
                              f"class's arguments, as in configs/{group}/. Choose another one with {group}=<option>, "
                              f"or change single keys with {full}.<key>=….")


def check_components(cfg: DictConfig, path: str = "") -> None:
    """Check every node with a `_target_`: importable, keys are arguments, scalar values fit the annotations."""
    if not path and isinstance(cfg, DictConfig):
        _check_component_keys(cfg)
    if isinstance(cfg, ListConfig):
        for i, item in enumerate(cfg):
            if isinstance(item, (DictConfig, ListConfig)):
                check_components(item, f"{path}[{i}]")
        return
    if not isinstance(cfg, DictConfig):
        return
    target = cfg.get("_target_") if "_target_" in cfg and not OmegaConf.is_missing(cfg, "_target_") else None
    if isinstance(target, str):
        _check_special_keys(cfg, path)
        _check_settings_blocks(cfg, path)
        _check_target(cfg, target, path)
    for key in cfg.keys():
        if key in SETTINGS_BLOCKS.get(path, {}):
            continue
        if OmegaConf.is_missing(cfg, key) or OmegaConf.is_interpolation(cfg, key):
            continue  # an interpolation is checked where it points
        node = cfg[key]
        if isinstance(node, (DictConfig, ListConfig)):
            check_components(node, f"{path}.{key}" if path else str(key))


def _check_target(cfg: DictConfig, target: str, path: str) -> None:
    where = f"'{path}._target_'" if path else "'_target_'"
    try:
        obj = locate(target)
    except Exception:
        module, _, name = target.rpartition(".")
        hint = ""
        try:
            mod = locate(module)
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
        value = _plain_value(cfg, key) if key in params else _UNSET
        if value is _UNSET:
            continue
        hint = hints.get(key, params[key].annotation)
        if value is None and _filled_from_data(cfg, key):
            continue
        if _scalar_ok(value, hint) is False:
            raise _type_error(cfg, key, full, value, hint, target)
    if not cfg.get("_partial_", False):
        missing = [n for n, p in params.items() if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                   and n not in cfg and not (n == "self")]
        if missing:
            raise ConfigError(f"{where}: {target} needs the argument(s) {', '.join(missing)}, which '{path}' does not set.")


# ------------------------------------------------------------------------------------------------ resolved values

_UNSET: Any = object()


def _clip(text: str, limit: int = 120) -> str:
    """Shorten what a user typed for a message (an override can be thousands of characters long)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain_value(cfg: DictConfig | ListConfig, key: Any) -> Any:
    """`cfg[key]` as plain Python with interpolations resolved, or _UNSET when it is missing (`???`) or cannot be
    resolved here (e.g. `${hydra:…}`, which needs Hydra's runtime): such values are not ours to judge."""
    try:
        if OmegaConf.is_missing(cfg, key):
            return _UNSET
        value = cfg[key]
        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
        return value
    except Exception:
        return _UNSET


def raw_text(parent: DictConfig | ListConfig, key: Any) -> str:
    """The text of the value at `parent[key]` as written, e.g. the interpolation `${trainer.max_epochs}` itself."""
    return str(OmegaConf.to_container(parent, resolve=False)[key])


Walked = Iterator[tuple[str, "DictConfig | ListConfig", Any, Any]]


def _walk(cfg: DictConfig | ListConfig, path: str = "", raw: Any = None) -> Walked:
    """(dotted key, parent, key, value as written) of every value below `cfg`, without resolving: the value as
    written is the `${…}` text of an interpolation and '???' for a missing value. Interpolated, missing and null
    containers are not entered (their values are met where the interpolation points)."""
    raw = OmegaConf.to_container(cfg, resolve=False) if raw is None else raw
    for key, value in (raw.items() if isinstance(raw, dict) else enumerate(raw)):
        full = f"{path}.{key}" if path else str(key)
        yield full, cfg, key, value
        if isinstance(value, (dict, list)):  # a container as written: neither `${…}`, `???` nor null
            yield from _walk(cfg[key], full, value)


# --------------------------------------------------------------------------------------------- interpolations


def _needs_hydra_runtime(raw: str, exc: BaseException) -> bool:
    """`${hydra:…}` (and what refers to it) resolves only inside a running Hydra job."""
    if "${hydra:" in raw.replace(" ", ""):
        return True
    cur: BaseException | None = exc
    while cur is not None:
        if "HydraConfig was not set" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _origin(cfg: DictConfig, full: str, raw: str) -> tuple[str, str]:
    """Follow plain references (`scheduler.max_epochs: ${trainer.max_epochs}`) to the key whose own interpolation
    is the broken one, so the message names what the user wrote."""
    seen = {full}
    while (ref := re.fullmatch(r"\$\{([A-Za-z_][\w.]*)\}", raw.strip())) and ref.group(1) not in seen:
        parent_key, _, leaf = ref.group(1).rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, throw_on_resolution_failure=False) if parent_key else cfg
        if not (isinstance(parent, DictConfig) and leaf in parent.keys() and OmegaConf.is_interpolation(parent, leaf)):
            break
        full, raw = ref.group(1), raw_text(parent, leaf)
        seen.add(full)
    return full, raw


def check_interpolations(cfg: DictConfig) -> None:
    """Resolve every `${…}` that can be resolved before Hydra runs and raise ConfigError for the first that cannot:
    an unknown key, an unknown resolver, a grammar error, or a result of the wrong type for a schema field. Left
    alone, these surface mid-run as OmegaConf tracebacks when the key is first read."""
    for full, parent, key, written in _walk(cfg):
        if full == "hydra" or full.startswith("hydra.") or not OmegaConf.is_interpolation(parent, key):
            continue
        raw = str(written)
        try:
            value = parent[key]
            if isinstance(value, (DictConfig, ListConfig)):
                OmegaConf.to_container(value, resolve=True)
        except Exception as exc:
            if _needs_hydra_runtime(raw, exc):
                continue
            detail = " ".join(str(exc).split("full_key:")[0].split())
            full, raw = _origin(cfg, full, raw)
            raise ConfigError(f"'{full}' is {_clip(raw)!r}, which cannot be resolved: {_clip(detail, 200)}. An "
                              f"interpolation names another key (e.g. ${{dataset.root}}) or a resolver (oc.env, now); "
                              f"fix it on the command line or in the YAML.") from None


# ----------------------------------------------------------------------------------------------- value ranges


@dataclass(frozen=True)
class Range:
    """The values a setting accepts: numeric bounds, a set of choices or a pattern. `example` is a valid value shown
    in the suggested fix; `each` applies the bounds to every element of a list (e.g. Adam's betas)."""

    example: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    pattern_text: str = ""
    each: bool = False

    @property
    def numeric(self) -> bool:
        return not self.choices and self.pattern is None

    def judges(self, value: Any) -> bool:
        """Whether `value` is this rule's business; a value of another type (null included: the schema or the
        class's type hints say where null is allowed) is left to the type checks."""
        if value is None:
            return False
        if self.numeric:
            items = value if self.each and isinstance(value, (list, tuple)) else [value]
            return (isinstance(value, (list, tuple)) == self.each
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items))
        return isinstance(value, str)

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.choices:
            return value in self.choices
        if self.pattern is not None:
            return re.fullmatch(self.pattern, value) is not None
        return all(self._in_bounds(v) for v in (value if self.each else [value]))

    def _in_bounds(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)

    def describe(self) -> str:
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.pattern is not None:
            text = self.pattern_text
        elif self.low is not None and self.high is not None:
            text = (f"in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}"
                    f"{')' if self.high_open else ']'}")
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {_num(self.low)}"
        else:
            text = f"{'<' if self.high_open else '<='} {_num(self.high)}"
        text = f"a list whose every value is {text}" if self.each else text
        return text + (" or null" if self.nullable else "")


def _num(x: float | None) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def at_least(low: float, example: Any, nullable: bool = False) -> Range:
    return Range(example, low=low, nullable=nullable)


def above(low: float, example: Any, nullable: bool = False) -> Range:
    return Range(example, low=low, low_open=True, nullable=nullable)


def between(low: float, high: float, example: Any, low_open: bool = False, high_open: bool = False,
            nullable: bool = False, each: bool = False) -> Range:
    return Range(example, low=low, high=high, low_open=low_open, high_open=high_open, nullable=nullable, each=each)


def one_of(*choices: str) -> Range:
    return Range(choices[0], choices=choices)


# Settings (schema fields of framework/config/schema.py), by dotted key; checked where a config has them. The tools'
# own top-level keys (infer's score_thr, browse's num, analyze's input_size, …) are checked by the tools themselves.
SETTING_RANGES: dict[str, Range] = {
    "trainer.max_epochs": at_least(1, 12),
    "trainer.eval_interval": at_least(1, 1),
    "trainer.log_interval": at_least(1, 20),
    "trainer.accumulate": at_least(1, 1),
    "trainer.grad_clip_norm": above(0, 35.0, nullable=True),
    "trainer.patience": at_least(1, 10, nullable=True),
    "trainer.max_time": above(0, 24, nullable=True),
    "trainer.checkpoint_interval": at_least(0, 0),
    "trainer.keep_checkpoints": at_least(0, 3, nullable=True),
    "trainer.vis_images": at_least(0, 4),
    "trainer.skip_nonfinite": at_least(0, 0),
    "trainer.precision": one_of("fp32", "bf16", "fp16"),  # framework.engine.setup.PRECISIONS
    "trainer.device": Range("auto", pattern=r"auto|cpu|mps|cuda(:\d+)?", pattern_text="auto, cpu, mps, cuda or cuda:N"),
    "trainer.ema.decay": between(0, 1, 0.9999, high_open=True),
    "trainer.ema.tau": above(0, 2000),
    "dataset.num_classes": at_least(1, 80, nullable=True),  # null: from the data
    "dataset.batch_size": at_least(1, 2),
    "dataset.val_batch_size": at_least(1, 2),
    "dataset.num_workers": at_least(0, 2),
    "dataset.min_size": at_least(1, 800),
    "dataset.max_size": at_least(1, 1333, nullable=True),  # and > min_size: see _check_size_order
    "dataset.img_size": at_least(32, 640),  # batches are padded to a multiple of 32, so no divisibility needed
    "dataset.metric": one_of("coco", "voc07", "voc12"),  # framework.evaluation.build.METRICS
    "dataset.on_bad_image": one_of("error", "skip", "repair"),
    "evaluation.backend": one_of("pycocotools", "faster_coco_eval"),  # framework.evaluation.coco.BACKENDS
    "seed": between(0, 2**32 - 1, 0),  # numpy.random.seed's range
    "optimizer.paramwise.norm_decay_mult": at_least(0, 0.0),
    "optimizer.paramwise.bias_decay_mult": at_least(0, 0.0),
    "optimizer.auto_scale_lr.base_batch_size": at_least(1, 16, nullable=True),
}

# Component arguments, by name, in any node with a `_target_`. Only names whose meaning is the same in every class
# that uses them: `threshold` (RandomSolarize: a pixel value; ReduceLROnPlateau: a relative change), `alpha`
# (focal weight, YOLO's exponent, MixUp's Beta parameter) and `min_size` (pixels) are deliberately absent. Lists
# where a scalar rule applies (RandomChoice's p, Adafactor's eps pair, CyclicLR's per-group max_lr) are skipped.
ARGUMENT_RANGES: dict[str, Range] = {
    "lr": above(0, 0.01),
    "max_lr": above(0, 0.01),
    "weight_decay": at_least(0, 0.0001),
    "momentum": between(0, 1, 0.9),
    "betas": between(0, 1, [0.9, 0.999], high_open=True, each=True),
    "eps": above(0, 1e-8),
    "label_smoothing": between(0, 1, 0.1),
    "loss_weight": at_least(0, 1.0),
    "p": between(0, 1, 0.5),
    "prob": between(0, 1, 0.5),
    "prior_prob": between(0, 1, 0.01, low_open=True, high_open=True, nullable=True),  # log(p / (1 - p))
    "score_thr": between(0, 1, 0.05),
    "pos_fraction": between(0, 1, 0.5),
    "max_per_img": at_least(1, 100),
    "warmup_ratio": between(0, 1, 0.001),
    "warmup_iters": at_least(0, 500, nullable=True),
    "warmup_epochs": at_least(0, 3, nullable=True),
    "warmup_max_share": between(0, 1, 0.1, low_open=True, nullable=True),
    "close_mosaic_epochs": at_least(0, 2),
    "min_ratio": between(0, 1, 0.01),
}
# IoU thresholds: pos_iou_thr, neg_iou_thr, nms_iou_thr, iou_thr, min_pos_iou, … (all scalars in this framework)
IOU_ARGUMENT = re.compile(r"iou_thr|_iou$")
IOU_RANGE = between(0, 1, 0.5)


def _show(value: Any) -> str:
    """A value as it would be typed in an override."""
    if value is None:
        return "null"
    if value == "":
        return "''"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return _clip(str(value), 60)


def _range_error(key: str, value: Any, rule: Range, raw: str | None = None) -> ConfigError:
    source = f" (from {_clip(raw, 60)})" if raw else ""
    example = rule.example
    if rule.numeric:
        problem = "is out of range" + ("" if rule.each or value is None or math.isfinite(value) else
                                       " (not a finite number)")
        hint = ""
    else:
        problem = "is not allowed"
        hint = did_you_mean(str(value), rule.choices)
        if hint:
            example = difflib.get_close_matches(str(value), list(rule.choices), n=1, cutoff=0.6)[0]
    reference = re.fullmatch(r"\$\{([A-Za-z_][\w.]*)\}", raw or "")  # fix the key it comes from
    fix_key = reference.group(1) if reference else key
    return ConfigError(f"{key}={_show(value)}{source} {problem}: it must be {rule.describe()}.{hint} Fix it on the "
                       f"command line ({fix_key}={_show(example)}) or in the YAML.")


def _check_value(parent: DictConfig | ListConfig, key: Any, full: str, rule: Range) -> None:
    value = _plain_value(parent, key)
    if value is _UNSET or not rule.judges(value) or rule.accepts(value):
        return
    raw = raw_text(parent, key) if OmegaConf.is_interpolation(parent, key) else None
    raise _range_error(full, value, rule, raw)


def _check_size_order(dataset: DictConfig) -> None:
    """dataset.max_size caps the longer side after the shorter one is resized to dataset.min_size; torchvision's
    Resize refuses max_size <= size (a ValueError only once the pipeline is built), so check it here."""
    low, high = (_plain_value(dataset, k) if k in dataset.keys() else None for k in ("min_size", "max_size"))
    if not (isinstance(low, int) and isinstance(high, int)) or high > low:
        return
    raise ConfigError(f"dataset.max_size={high} must be greater than dataset.min_size={low} (or null for no cap): "
                      f"images are resized so that the shorter side is min_size unless the longer side would exceed "
                      f"max_size. Fix it on the command line (dataset.max_size={low * 5 // 3 + 1} or a smaller "
                      f"dataset.min_size) or in the YAML.")


def _check_arguments(cfg: DictConfig | ListConfig, path: str = "") -> None:
    for full, parent, key, _ in _walk(cfg, path):
        if not isinstance(parent, DictConfig) or "_target_" not in parent or full.startswith("hydra."):
            continue
        rule = ARGUMENT_RANGES.get(str(key)) or (IOU_RANGE if IOU_ARGUMENT.search(str(key)) else None)
        if rule is not None:
            _check_value(parent, key, full, rule)


def check_ranges(cfg: DictConfig) -> None:
    """Raise ConfigError for the first setting or component argument outside its range (SETTING_RANGES,
    ARGUMENT_RANGES): a negative lr or a batch size of 0 would otherwise fail, or silently misbehave, only after
    the data and the model are built. Works on any composed config (the tools' and a checkpoint's saved one); keys
    that are absent, missing or resolvable only at Hydra's runtime are skipped."""
    for full, rule in SETTING_RANGES.items():
        parent_key, _, key = full.rpartition(".")
        parent = _section(cfg, parent_key)
        if parent is not None and key in parent.keys():
            _check_value(parent, key, full, rule)
    dataset = _section(cfg, "dataset")
    if dataset is not None:
        _check_size_order(dataset)
    _check_arguments(cfg)


def _section(cfg: DictConfig, dotted: str) -> DictConfig | None:
    """The mapping at `dotted` ('' is the root), or None when it is absent, not a mapping, or unresolvable."""
    try:
        node = OmegaConf.select(cfg, dotted, default=None, throw_on_missing=False) if dotted else cfg
    except Exception:
        return None
    return node if isinstance(node, DictConfig) else None
