"""Shared fixtures: a tiny shapes dataset generated once per test session; and the settings for `make test`'s
parallel run (pytest-xdist, `-n 2 --dist loadgroup`)."""
from __future__ import annotations

import compileall
import os
import sys
from pathlib import Path

# Under pytest-xdist every worker, and every tool a test starts (tools/train.py, torchrun, the benchmarks), gets ONE
# intra-op thread: the workers already fill the cores, and with two OpenMP threads per process on two busy cores
# every parallel region waits for a descheduled thread (a training step of the overfit test: 8 s instead of 0.3 s,
# measured). Set before torch is imported, so that the environment reaches OpenMP here and in child processes; a
# benchmark that asks for more threads itself gets passive waiting instead of spinning.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if XDIST_WORKER:
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import pytest  # noqa: E402
import torch  # noqa: E402

from framework.data.datasets.shapes import generate_shapes  # noqa: E402
from framework.data.datasets.shapes_cityscapes import write_shapes_cityscapes  # noqa: E402
from framework.data.datasets.shapes_voc import write_shapes_voc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

if XDIST_WORKER:
    torch.set_num_threads(1)  # in case torch was imported before this file (the environment above came too late)

def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile framework/ once, before any test starts a tool: about a hundred tools/*.py processes import it,
    and with PYTHONDONTWRITEBYTECODE set (or in a fresh clone, several at once) each one would compile its ~80
    modules again, about 1 s of CPU per process. Writes only framework/**/__pycache__ (git-ignored); a read-only
    tree just stays uncompiled."""
    if sys.dont_write_bytecode and not hasattr(config, "workerinput"):  # the xdist controller, or a plain run
        compileall.compile_dir(REPO / "framework", quiet=2)


# Fixtures that take seconds (a training run, a batch of tool runs) and that several tests share. With
# `--dist loadgroup` every test that uses one of them goes to the same xdist worker, so that each is set up once;
# a session fixture is one group across modules, a module fixture one group per module.
SHARED_FIXTURES = ("trained_run", "ddp_run", "runs", "engine_run")


# Under xdist, the tests that start tools (tests/tools/, tests/benchmarks/) and the `slow` ones are handed out first,
# so that the run ends on short in-process tests instead of one worker finishing a 40 s training run alone.
FIRST_UNDER_XDIST = ("tests/tools/", "tests/benchmarks/")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if XDIST_WORKER:  # the same stable order in every worker, as xdist requires
        items.sort(key=lambda item: not (item.nodeid.startswith(FIRST_UNDER_XDIST) or item.get_closest_marker("slow")))
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        used = [name for name in SHARED_FIXTURES if name in info.name2fixturedefs]
        defs = [info.name2fixturedefs[name][-1] for name in used]
        if not defs:
            continue
        # the widest-scoped one names the group (export's `runs` needs the session's `trained_run`)
        name, fixturedef = min(zip(used, defs), key=lambda nd: nd[1].scope != "session")
        group = name if fixturedef.scope == "session" else f"{item.nodeid.split('::')[0]}::{name}"
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    generate_shapes(root, num_train=24, num_val=8, seed=0)
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shapes_voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shapes pictures in VOCdevkit layout, for VOC2007 and VOC2012 (voc0712 reads both)."""
    root = tmp_path_factory.mktemp("shapes_voc") / "VOCdevkit"
    for year in ("2007", "2012"):
        write_shapes_voc(root, num_train=24, num_val=8, seed=0, year=year)
    return root


@pytest.fixture(scope="session")
def shapes_yolo_root(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shapes pictures in ultralytics YOLO layout (data.yaml, images/ symlinked to the COCO layout's, labels/)."""
    from framework.data.convert import convert, open_split

    out = tmp_path_factory.mktemp("shapes_yolo") / "shapes_yolo"
    convert({split: open_split("coco", shapes_root, split) for split in ("train", "val")}, "yolo", out)
    return out


@pytest.fixture(scope="session")
def shapes_cityscapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shapes pictures in Cityscapes layout (leftImg8bit/ + gtFine/ instance-id PNGs)."""
    return write_shapes_cityscapes(tmp_path_factory.mktemp("shapes_cs") / "shapes_cityscapes", num_train=24,
                                   num_val=8, seed=0)
