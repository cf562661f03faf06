"""The command-line entry shared by `tools/*.py`: Hydra's `@hydra.main`, with the config checked first.

Before Hydra runs, the same overrides are composed once with Hydra's compose API; a failure is diagnosed
(`validation.py`) and reported in one paragraph without a traceback, and component nodes are checked against their
classes. Errors a user causes while the task runs (missing dataset, missing checkpoint) are reported the same way.
`HYDRA_FULL_ERROR=1` turns all of this off and shows Hydra's own output with full tracebacks.
"""
from __future__ import annotations

import functools
import os
import re
import sys
import time
from datetime import datetime
from typing import Any, Callable

from omegaconf import DictConfig

from framework.config import CONFIG_DIR
from framework.config.targets import check_targets
from framework.config.validation import (
    ConfigError, check_components, did_you_mean, group_options, is_group, missing_keys, unknown_key_message,
)
from framework.data.errors import DatasetError
from framework.engine.checkpoint import CheckpointError
from framework.engine.runner import NonFiniteLossError
from framework.models.backbones.resnet import PretrainedWeightsError
from framework.models.backbones.timm import TimmNotInstalledError

# Exceptions that mean "the user asked for something wrong", reported without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError, CheckpointError, DatasetError,
                                                NonFiniteLossError, PretrainedWeightsError, TimmNotInstalledError)


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _fail(message: str) -> None:
    print(f"Error: {message}\n(Set HYDRA_FULL_ERROR=1 for the full traceback.)", file=sys.stderr)
    sys.exit(2)


def _find_user_error(exc: BaseException) -> BaseException | None:
    """The user-caused error behind `exc`, if any (hydra.utils.instantiate wraps what constructors raise)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, USER_ERRORS):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def expand_group_shortcuts(argv: list[str]) -> list[str]:
    """`model.head.box_loss=ciou` → `model/head/box_loss=ciou` when `model/head/box_loss` is a config group and
    `ciou` one of its options: a dotted key naming a component is almost always meant as a choice of option, and
    Hydra itself would refuse to put a string where the component's mapping is."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        group = key.replace(".", "/")
        if eq and not arg.startswith(("-", "+", "~")) and "." in key and "/" not in key and is_group(CONFIG_DIR, group):
            options = group_options(CONFIG_DIR, group)
            if value not in options:
                raise ConfigError(f"'{value}' is not an option of the config group '{group}' (from '{arg}')."
                                  f"{did_you_mean(value, options)} Available options: {', '.join(options)} "
                                  f"(files in configs/{group}/); to set one key inside it, use {key}.<key>=….")
            arg = f"{group}={value}"
        out.append(arg)
    return out


def _parse_args(argv: list[str]) -> Any:
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_args(argv)


def _expand_sweeps(parsed: list[Any]) -> list[list[str]]:
    """One override list per value of each sweep (others at their first value), so every sweep value is checked."""
    choices = []
    for o in parsed:
        if o.is_sweep_override():
            try:
                values = [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
            except Exception:  # interval/glob sweeps: leave them to Hydra
                values = []
            choices.append(values or [])
        else:
            choices.append([o.input_line])
    base = [c[0] for c in choices if c]
    variants = [base]
    for i, c in enumerate(choices):
        for value in c[1:]:
            variant = [c2[0] for c2 in choices[:i] if c2] + [value] + [c2[0] for c2 in choices[i + 1:] if c2]
            variants.append(variant)
    return variants


def _diagnose(config_name: str, overrides: list[str], exc: Exception) -> str:
    """Explain why composing `overrides` failed, naming the offending override."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf.errors import ValidationError

    parsed = OverridesParser.create().parse_overrides(overrides)
    # 1. an unknown option of a config group
    for o in parsed:
        key = o.key_or_group
        if o.is_delete() or not is_group(CONFIG_DIR, key):
            continue
        options = group_options(CONFIG_DIR, key)
        value = o.value()
        if isinstance(value, str) and value not in options:
            return (f"'{value}' is not an option of the config group '{key}' (from '{o.input_line}')."
                    f"{did_you_mean(value, options)} Available options: {', '.join(options)} "
                    f"(files in configs/{key}/).")
    # 2. an unknown key: compare with the config composed from the group choices alone
    group_overrides = [o.input_line for o in parsed if is_group(CONFIG_DIR, o.key_or_group) or o.is_add()]
    try:
        base = compose(config_name, overrides=group_overrides)
    except Exception:
        base = None
    if base is not None:
        for o in parsed:
            if is_group(CONFIG_DIR, o.key_or_group) or o.is_add() or o.key_or_group.startswith("hydra"):
                continue
            msg = unknown_key_message(base, o.key_or_group, o.input_line)
            if msg:
                return msg
    # 3. a value of the wrong type for a schema field
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ValidationError):
            key = getattr(cause, "full_key", "") or "?"
            line = next((o.input_line for o in parsed if o.key_or_group == key), None)
            detail = str(cause.msg if hasattr(cause, "msg") else cause).splitlines()[0]
            src = f" (from '{line}')" if line else ""
            return f"Invalid value for '{key}'{src}: {detail}. See framework/config/schema.py for the expected types."
        cause = cause.__cause__ or cause.__context__
    first = str(exc).strip().splitlines()
    return f"Could not compose the config: {' '.join(first[:3]) if first else type(exc).__name__}"


def check_overrides(config_name: str, argv: list[str]) -> DictConfig | None:
    """Compose the config as Hydra will and raise ConfigError with a clear message if it is wrong.

    Returns the composed config of the first job (None when only Hydra's own flags were given)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = _parse_args(expand_group_shortcuts(argv))
    if args.help or args.hydra_help or args.info or args.shell_completion or getattr(args, "version", False):
        return None
    config_name = args.config_name or config_name
    overrides = [o for o in args.overrides if not o.lstrip("+~").startswith("hydra")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(f"Could not parse the command-line overrides: {str(exc).splitlines()[0]}") from None
    GlobalHydra.instance().clear()
    first: DictConfig | None = None
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for variant in _expand_sweeps(parsed):
            try:
                cfg = compose(config_name, overrides=variant)
            except Exception as exc:  # Hydra raises several unrelated types here
                raise ConfigError(_diagnose(config_name, variant, exc)) from None
            missing = missing_keys(cfg)
            if missing:
                raise ConfigError(f"The config needs a value for {', '.join(repr(k) for k in missing)}: pass it on the "
                                  f"command line, e.g. {missing[0]}=…")
            check_targets(cfg)  # before check_components, which imports what the targets name
            check_components(cfg)
            first = first if first is not None else cfg
    GlobalHydra.instance().clear()
    return first


def agree_on_run_dir(config_name: str, argv: list[str]) -> list[str]:
    """Under torchrun, make every rank use rank 0's run folder, and only rank 0 write Hydra's files and logs.

    Each rank composes `hydra.run.dir` itself, and `${now:…}` can differ by a second between ranks; so the start
    time is taken on rank 0, broadcast, and substituted into the run-dir pattern (the config's or the user's)."""
    from omegaconf import OmegaConf

    from framework.engine import distributed

    info = distributed.init_distributed()
    if not info.enabled:
        return argv
    start = distributed.broadcast_object(time.time())
    given = [a for a in argv if a.startswith("hydra.run.dir=")]
    if given:
        pattern = given[-1].split("=", 1)[1]
    else:
        raw = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml"), resolve=False)
        pattern = raw.get("hydra", {}).get("run", {}).get("dir", "outputs/${now:%Y-%m-%d_%H-%M-%S}")
    run_dir = re.sub(r"\$\{now:([^}]*)\}", lambda m: datetime.fromtimestamp(start).strftime(m.group(1)), pattern)
    argv = [a for a in argv if not a.startswith("hydra.run.dir=")] + [f"hydra.run.dir={run_dir}"]
    if not info.is_main:
        argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    return argv


def _quiet_unless_rank_zero() -> None:
    """On ranks other than 0 (torchrun, or the tasks of a SLURM job launched by submitit, where Hydra has already
    set up logging for every task), drop the log files and keep only warnings on the console."""
    import logging

    from framework.engine.distributed import env_info

    if env_info().rank == 0:
        return
    for log in (logging.getLogger(), logging.getLogger("framework")):
        for handler in list(log.handlers):
            if isinstance(handler, logging.FileHandler):
                log.removeHandler(handler)
                handler.close()
    logging.getLogger("framework").setLevel(logging.WARNING)


def hydra_cli(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorator for a tool's main: `@hydra_cli("train") def main(cfg): …` then `main()`."""

    def decorator(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @functools.wraps(task)
        def guarded(cfg: DictConfig) -> Any:
            _quiet_unless_rank_zero()
            if _full_error():
                return task(cfg)
            try:
                return task(cfg)
            except Exception as exc:
                user_error = _find_user_error(exc)
                if user_error is None:
                    raise
                _fail(str(user_error))

        @functools.wraps(task)
        def main() -> Any:
            import hydra

            if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:  # the tool's own usage first, then Hydra's
                doc = sys.modules[task.__module__].__doc__
                if doc:
                    print(doc.strip() + "\n")
            try:
                sys.argv[1:] = expand_group_shortcuts(sys.argv[1:])
                if not _full_error():
                    check_overrides(config_name, sys.argv[1:])
                sys.argv[1:] = agree_on_run_dir(config_name, sys.argv[1:])
            except ConfigError as exc:
                if _full_error():
                    raise
                _fail(str(exc))
            try:
                return hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)(guarded)()
            except KeyboardInterrupt:  # a second Ctrl-C during training, or one outside it: no traceback
                if _full_error():
                    raise
                print("Interrupted.", file=sys.stderr)
                sys.exit(130)

        return main

    return decorator


__all__ = ["ConfigError", "check_overrides", "hydra_cli"]
