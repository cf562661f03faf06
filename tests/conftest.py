"""Shared fixtures: a tiny shapes dataset generated once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest

from framework.data.datasets.shapes import generate_shapes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    generate_shapes(root, num_train=24, num_val=8, seed=0)
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
