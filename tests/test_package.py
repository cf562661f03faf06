"""The package's public names: `framework.Predictor` is the inference API; `framework.Detector`, its name before
0.2, still works for one release and warns."""
from __future__ import annotations

import pytest


def test_predictor_and_its_deprecated_alias():
    import framework
    import framework.inference

    assert framework.Predictor is framework.inference.Predictor
    with pytest.warns(DeprecationWarning, match="framework.Detector is deprecated .* use framework.Predictor"):
        assert framework.Detector is framework.Predictor
    with pytest.warns(DeprecationWarning, match="framework.inference.Detector is deprecated"):
        assert framework.inference.Detector is framework.Predictor
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        framework.Nope  # noqa: B018


def test_no_module_shadows_the_standard_library(repo_root):
    import sys

    names = {p.stem for p in (repo_root / "framework").rglob("*.py")} | {
        p.name for p in (repo_root / "framework").rglob("*") if p.is_dir()}
    assert not names & set(sys.stdlib_module_names) - {"__init__", "__main__"}, names & set(sys.stdlib_module_names)
