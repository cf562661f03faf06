"""Every `python tools/<name>.py …` command line shown in README.md and docs/*.md is one the tool accepts.

Commands are found in fenced code blocks (a line starting with `python`, `python3` or `torchrun`, or `$ ` and one of
those; a line ending in a backslash continues on the next) and in inline code (`` `python tools/….py …` ``). They
are split as the shell would (`shlex`, comments dropped), and then, in-process (no subprocess, no torch import per
command):

- a Hydra tool (`@hydra_cli("<config>")` in tools/<name>.py) gets its config composed and validated with the
  command's overrides plus `--cfg job`, by `framework.config.cli.check_overrides`, the function the tool itself
  runs before any work: group options, keys, types, ranges, `_target_`s, every value of a `-m` sweep. Under
  `torchrun …`, the launcher's own options are left out and the tool's arguments are composed the same way.
  `tools/plot_run.py`'s bare first argument is its `run_dir=`, as in the tool.
- an argparse tool (tools/convert_*.py, tools/make_shapes.py) gets its arguments parsed by its own `parse_args`;
  the config overrides a converter saves with its checkpoint are composed as above.
- a `$ ` command in a code block followed by a line `Error: …` is shown failing on purpose: it must fail with a
  ConfigError whose message is the one shown (the shown line may end early with `…`).

Placeholders, the convention for the docs (tests/README.md):
- `…` stands for part of a path (`checkpoint=…/best.pth`, `dataset.root=…`); it is replaced by `work_dirs/exp/run`.
  Never write it in place of a group option or a number: write a real one.
- `<word>` stands for a path segment (`work_dirs/<exp>/<time>`); it is replaced by `word`.
- `$VAR` appears only in torchrun's own options, which are not checked.
- `mypackage` is the reader's own package (`allow_targets=[mypackage]`, `mypackage.callbacks.MyLogger`): the test
  provides a stand-in module whose classes take any arguments.
Paths are not required to exist: composing checks the config, not the files.
"""
from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import types
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from framework.config.cli import check_overrides
from framework.config.validation import ConfigError

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

LAUNCHERS = ("python", "python3", "torchrun")
TOOL = re.compile(r"^tools/(\w+)\.py$")
FENCE = re.compile(r"^\s*```")
INLINE = re.compile(r"`((?:python3?|torchrun) [^`]*?tools/\w+\.py[^`]*)`")
PATH_PLACEHOLDER = "work_dirs/exp/run"


@dataclass(frozen=True)
class Command:
    where: str          # README.md:42
    line: str           # as written (continuations joined)
    tool: str           # train, convert_torchvision, …
    args: tuple[str, ...]
    error: str | None   # the `Error: …` text shown under a `$ ` command, if any


def substitute(arg: str) -> str:
    arg = arg.replace("…", PATH_PLACEHOLDER)
    return re.sub(r"<(\w+)>", r"\1", arg)


def parse_command(text: str) -> tuple[str, tuple[str, ...]] | None:
    """(tool name, its arguments) of a shell line that runs tools/<name>.py, else None."""
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError:
        return None
    if not tokens or tokens[0] not in LAUNCHERS:
        return None
    for i, token in enumerate(tokens[1:], 1):
        m = TOOL.match(token)
        if m:
            if tokens[0] != "torchrun" and i != 1:  # `python -c …`, `python -m pytest …`: not a tool command
                return None
            return m.group(1), tuple(substitute(a) for a in tokens[i + 1:])
        if tokens[0] != "torchrun" and not token.startswith("-"):
            return None
    return None


def logical_lines(lines: list[str], start: int) -> list[tuple[int, str]]:
    """(line number, text) of the lines of a code block, with backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending, first = "", 0
    for number, line in enumerate(lines, start):
        if not pending:
            first = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append((first, pending + stripped.strip()))
        pending = ""
    if pending:
        out.append((first, pending))
    return out


def commands_in(path: Path) -> list[Command]:
    name = path.relative_to(REPO).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Command] = []
    in_block, block_start, block = False, 0, []
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            if in_block:
                joined = logical_lines(block, block_start)
                for k, (n, text) in enumerate(joined):
                    shown_failing = text.startswith("$ ")
                    parsed = parse_command(text[2:] if shown_failing else text)
                    if parsed is None:
                        continue
                    error = None
                    if shown_failing and k + 1 < len(joined) and joined[k + 1][1].startswith("Error: "):
                        error = joined[k + 1][1][len("Error: "):]
                    found.append(Command(f"{name}:{n}", text, parsed[0], parsed[1], error))
                block = []
            in_block, block_start = not in_block, number + 1
            continue
        if in_block:
            block.append(line)
            continue
        for m in INLINE.finditer(line):
            parsed = parse_command(m.group(1))
            if parsed is not None:
                found.append(Command(f"{name}:{number}", m.group(1), parsed[0], parsed[1], None))
    return found


def distinct(commands: list[Command]) -> list[Command]:
    """One case per distinct command (the README's tour repeats lines of docs/): the first place it is shown."""
    seen: dict[tuple, Command] = {}
    for c in commands:
        seen.setdefault((c.tool, c.args, c.error), c)
    return list(seen.values())


ALL_COMMANDS = [c for path in DOC_FILES for c in commands_in(path)]
COMMANDS = distinct(ALL_COMMANDS)


@cache
def hydra_config_of(tool: str) -> str | None:
    """The config name of a Hydra tool (`@hydra_cli("train")`), None for an argparse one."""
    m = re.search(r'@hydra_cli\("(\w+)"\)', (REPO / "tools" / f"{tool}.py").read_text(encoding="utf-8"))
    return m.group(1) if m else None


@cache
def tool_module(tool: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"_docs_tool_{tool}", REPO / "tools" / f"{tool}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def has_callbacks_group() -> bool:
    return "callbacks" in check_overrides("train", [])


@pytest.fixture
def reader_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """`mypackage`, the reader's own package in the docs' examples: any class under it takes any arguments."""

    class Stub(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            if name.startswith("__"):
                raise AttributeError(name)
            def __init__(self: object, *args: object, **kwargs: object) -> None:
                pass

            return type(name, (), {"__init__": __init__, "__module__": self.__name__, "__qualname__": name})

    package, callbacks = Stub("mypackage"), Stub("mypackage.callbacks")
    package.__path__ = []  # a package, so that its submodule imports
    package.callbacks = callbacks
    monkeypatch.setitem(sys.modules, "mypackage", package)
    monkeypatch.setitem(sys.modules, "mypackage.callbacks", callbacks)


def compose(command: Command) -> None:
    config = hydra_config_of(command.tool)
    args = list(command.args)
    if command.tool == "plot_run" and args and "=" not in args[0] and not args[0].startswith("-"):
        args[0] = f"run_dir={args[0]}"  # as tools/plot_run.py does
    check_overrides(config, [*args, "--cfg", "job"])


def parse(command: Command) -> None:
    module = tool_module(command.tool)
    try:
        parsed = module.parse_args(list(command.args))
    except SystemExit as exc:
        pytest.fail(f"{command.where}: tools/{command.tool}.py refuses its arguments (exit {exc.code}): "
                    f"{command.line}")
    overrides = getattr(parsed, "overrides", None)
    if overrides:  # the converters save these with the checkpoint: they must compose
        check_overrides("train", list(overrides))


def test_the_docs_show_commands():
    tools = {c.tool for c in ALL_COMMANDS}
    assert len(ALL_COMMANDS) >= 40 and {"train", "test", "infer", "export", "make_shapes", "convert_dataset"} <= tools
    assert all((REPO / "tools" / f"{tool}.py").is_file() for tool in tools), tools


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.where}:{c.tool}" for c in COMMANDS])
def test_command_is_accepted(command: Command, reader_package: None, capsys: pytest.CaptureFixture) -> None:
    if hydra_config_of(command.tool) is None:
        assert command.error is None, f"{command.where}: an argparse tool shown failing"
        parse(command)
        return
    if command.error is not None:
        with pytest.raises(ConfigError) as info:
            compose(command)
        shown = command.error.rstrip("…").rstrip()
        assert str(info.value).startswith(shown), (f"{command.where}: the docs show\n  {command.error}\nbut the "
                                                   f"tool says\n  {info.value}")
        return
    try:
        compose(command)
    except ConfigError as exc:
        if "callbacks" in command.line and not has_callbacks_group():
            pytest.xfail("the `callbacks` config group has not landed yet (issue 20); this command composes "
                         "once it has")
        pytest.fail(f"{command.where}: `{command.line}` does not compose:\n{exc}")
