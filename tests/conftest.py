"""Shared fixtures: a tiny shapes dataset generated once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest

from framework.data.datasets.shapes import generate_shapes
from framework.data.datasets.shapes_cityscapes import write_shapes_cityscapes
from framework.data.datasets.shapes_voc import write_shapes_voc

REPO = Path(__file__).resolve().parents[1]


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
def shapes_cityscapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shapes pictures in Cityscapes layout (leftImg8bit/ + gtFine/ instance-id PNGs)."""
    return write_shapes_cityscapes(tmp_path_factory.mktemp("shapes_cs") / "shapes_cityscapes", num_train=24,
                                   num_val=8, seed=0)
