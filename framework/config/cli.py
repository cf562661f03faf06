"""The command-line entry shared by `tools/*.py`: Hydra's `@hydra.main`, with the config checked first.

Before Hydra runs, the same overrides are composed once with Hydra's compose API; a failure is diagnosed
(`validation.py`) and reported in one paragraph without a traceback, and component nodes are checked against their
classes. Errors a user causes while the task runs (missing dataset, missing checkpoint) are reported the same way.
`HYDRA_FULL_ERROR=1` turns all of this off and shows Hydra's own output with full tracebacks.
"""
from __future__ import annotations

import functools
import itertools
import os
import re
import sys
import time
from datetime import datetime
from typing import Any, Callable, NoReturn

from omegaconf import DictConfig

from framework.config import CONFIG_DIR
from framework.config.instantiation import check_targets
from framework.config.overrides import parse_overrides
from framework.config.validation import (
    ConfigError, check_components, check_interpolations, check_ranges, did_you_mean, group_options, is_group,
    missing_keys, unknown_key_message,
)
from framework.data.errors import DatasetError
from framework.engine.checkpoint import CheckpointError, find_cause
from framework.engine.callbacks.nonfinite import NonFiniteLossError
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
    return find_cause(exc, USER_ERRORS)


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
    """Hydra's own argument parser, raising ConfigError where argparse would print its usage and exit.

    Private API (Hydra's internal utils): Hydra has no public parser for its flags (--cfg, -m, --config-name, …), and
    a copy of the flag list would drift from the one `hydra.main` parses right after this check."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def error(message: str) -> NoReturn:
        raise ConfigError(f"{message}. Flags are listed by --help; overrides are key=value.")

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_args(argv)


def _parse_overrides(overrides: list[str]) -> list[Any]:
    """Hydra's parse of the overrides; on failure, a message about the first override that does not parse."""
    try:
        parsed = parse_overrides(overrides)
    except Exception as exc:
        failure: Exception = exc
    else:
        empty = next((o for o in parsed if not o.key_or_group), None)
        if empty is not None:
            raise ConfigError(f"'{empty.input_line[:80]}' has no key before '=': write key=value, e.g. "
                              f"trainer.max_epochs=12.")
        return parsed
    for arg in overrides:
        try:
            parse_overrides([arg])
        except Exception as exc:
            raise ConfigError(_parse_error(arg, exc)) from None
    raise ConfigError(f"Could not parse the command-line overrides: {str(failure).splitlines()[0][:200]}")


def _parse_error(arg: str, exc: Exception) -> str:
    shown = arg if len(arg) <= 80 else arg[:79] + "…"
    if "=" not in arg and not arg.startswith("~"):
        return (f"'{shown}' is not an override: write key=value (trainer.max_epochs=12), +key=value to add a key or "
                f"~key to remove one; flags start with '-' (see --help).")
    detail = " ".join(str(exc).split())[:160] or type(exc).__name__
    return (f"Could not parse the override '{shown}' ({detail}). Keys are dotted names (trainer.max_epochs); quote a "
            f"value with spaces or special characters (key='a b'); lists are [a,b], mappings {{a:1}}.")


SWEEP_CHECK_LIMIT = 20  # values of one sweep checked (a long range is not composed value by value)


def _sweep_values(o: Any, parsed: list[Any]) -> list[str]:
    """The overrides one sweep stands for, as the basic sweeper enumerates them (the first SWEEP_CHECK_LIMIT)."""
    key, value, line = o.get_key_element(), o.value(), o.input_line
    if o.is_interval_sweep():
        if any(p.key_or_group == "hydra/sweeper" for p in parsed):
            return []  # sampled by the chosen sweeper plugin: nothing to enumerate
        raise ConfigError(f"'{line}': interval() is sampled by sweeper plugins (hydra/sweeper=optuna, …); the "
                          f"basic sweeper enumerates only lists (a,b), range() and glob().")
    if o.value_type.name == "GLOB_CHOICE_SWEEP":  # glob(): Hydra needs its config loader to list the options
        if not is_group(CONFIG_DIR, o.key_or_group):
            raise ConfigError(f"'{line}': glob() chooses among the options of a config group, and "
                              f"'{o.key_or_group}' is not one; list the values instead ({key}=a,b).")
        items: Any = value.filter(group_options(CONFIG_DIR, o.key_or_group))
    elif o.is_range_sweep():
        if value.step == 0:
            raise ConfigError(f"'{line}': the step of range() must not be 0.")
        items = map(str, value.range())  # not sweep_iterator: a shuffled range would be listed whole first
    else:
        items = o.sweep_string_iterator()
    values = [f"{key}={v}" for v in itertools.islice(items, SWEEP_CHECK_LIMIT)]
    if not values:
        raise ConfigError(f"'{line}' sweeps over no values.")
    return values


def _check_run_mode(args: Any, parsed: list[Any]) -> None:
    """Without -m, Hydra refuses a sweep ('Ambiguous value'): say so here, with the three ways out."""
    multirun = args.multirun or any(o.key_or_group == "hydra.mode" and str(o.value()).upper() == "MULTIRUN"
                                    for o in parsed)
    sweep = next((o for o in parsed if o.is_sweep_override()), None)
    if sweep is not None and not multirun:
        key = sweep.get_key_element()
        raise ConfigError(f"'{sweep.input_line}' gives several values (a sweep): add -m (--multirun) to run one job "
                          f"per value, write a list as {key}=[a,b], or quote a string with commas: {key}='a,b'.")


def _expand_sweeps(parsed: list[Any]) -> list[list[str]]:
    """One override list per value of each sweep (others at their first value), so every sweep value is checked."""
    choices = []
    for o in parsed:
        if o.is_sweep_override():
            choices.append(_sweep_values(o, parsed))
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
    from omegaconf.errors import ValidationError

    parsed = parse_overrides(overrides)
    # 1. an unknown option of a config group
    for o in parsed:
        msg = _group_option_message(o)
        if msg:
            return msg
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
    return f"Could not compose the config: {_causes(exc)}"


def _causes(exc: BaseException) -> str:
    """The first lines of `exc` and of the exceptions behind it (Hydra wraps the informative one)."""
    lines: list[str] = [" ".join(line.strip() for line in str(exc).splitlines()[:3] if line.strip())]
    cur: BaseException | None = exc.__cause__ or exc.__context__
    while cur is not None and len(lines) < 4:
        first = next((line.strip() for line in str(cur).splitlines() if line.strip()), "")
        if first and not any(first in seen for seen in lines):
            lines.append(first)
        cur = cur.__cause__ or cur.__context__
    return ": ".join(lines)[:300] or type(exc).__name__


def _group_option_message(o: Any) -> str | None:
    """What is wrong with a config-group override (`model=…`), if anything: an unknown option, or a value that is
    not an option name at all (null, a number, a mapping)."""
    key = o.key_or_group
    if o.is_delete() or not is_group(CONFIG_DIR, key):
        return None
    options = group_options(CONFIG_DIR, key)
    value = o.value()
    names = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in names):
        return (f"'{o.input_line[:80]}': '{key}' is a config group, so its value names one of its options "
                f"({key}=<option>). Available options: {', '.join(options)} (files in configs/{key}/); to set one "
                f"key inside it, use {key.replace('/', '.')}.<key>=….")
    for name in names:
        if name not in options:
            return (f"'{name[:80]}' is not an option of the config group '{key}' (from '{o.input_line[:80]}')."
                    f"{did_you_mean(name, options)} Available options: {', '.join(options)} "
                    f"(files in configs/{key}/).")
    return None


def _config_exists(name: str) -> bool:
    """A primary config: configs/<name>.yaml, or a structured config stored as <name> (e.g. train_schema)."""
    from hydra.core.config_store import ConfigStore

    return (CONFIG_DIR / f"{name}.yaml").is_file() or f"{name}.yaml" in ConfigStore.instance().list("")


UNEXPECTED = "Unexpected error while checking the config"


Check = Callable[[str, list[str]], "DictConfig | None"]


def _one_paragraph(check: Check) -> Check:
    """Whatever goes wrong in `check`, the caller gets a ConfigError of one paragraph: our own messages with their
    line breaks folded, and anything else (a Hydra failure we do not diagnose, or a bug of ours) named as such."""

    @functools.wraps(check)
    def checked(config_name: str, argv: list[str]) -> DictConfig | None:
        try:
            return check(config_name, argv)
        except ConfigError as exc:
            raise ConfigError(" ".join(str(exc).split())) from None
        except Exception as exc:
            detail = " ".join(str(exc).split())[:200]
            raise ConfigError(f"{UNEXPECTED} ({type(exc).__name__}: {detail}); please report it with the command "
                              f"line.") from exc

    return checked


@_one_paragraph
def check_overrides(config_name: str, argv: list[str]) -> DictConfig | None:
    """Compose the config as Hydra will and raise ConfigError with a clear message if it is wrong.

    Returns the composed config of the first job (None when only Hydra's own flags were given)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    args = _parse_args(expand_group_shortcuts(argv))
    if args.help or args.hydra_help or args.info or args.shell_completion or getattr(args, "version", False):
        return None
    if args.config_path or args.config_dir or args.experimental_rerun:
        return None  # other config folders (or a pickled config): Hydra composes those itself
    config_name = args.config_name or config_name
    if not _config_exists(config_name):
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"--config-name={config_name[:80]}: there is no configs/{config_name[:80]}.yaml."
                          f"{did_you_mean(config_name, names)} Configs: {', '.join(names)}.")
    overrides = list(args.overrides)
    parsed = _parse_overrides(overrides)
    _check_run_mode(args, parsed)
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
            check_interpolations(cfg)  # before anything below reads a value
            check_targets(cfg)  # before check_components, which imports what the targets name
            check_components(cfg)
            check_ranges(cfg)
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
            from framework.engine import distributed

            try:
                return run_tool()
            finally:
                # Leave the process group before the interpreter shuts down: with gloo, a rank that exits without
                # this can abort in finalization ("terminate called without an active exception", SIGABRT) after
                # the run has finished, and torchrun then reports the whole job as failed.
                distributed.destroy()

        def run_tool() -> Any:
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
