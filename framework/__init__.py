"""Config-driven object detection. `from framework import Detector` gives the inference API
(`Detector.from_checkpoint(path).predict(image)`); the rest lives in the subpackages."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # imported on first use: `import framework.models` stays light
    if name == "Detector":
        from framework.inference import Detector

        return Detector
    raise AttributeError(f"module 'framework' has no attribute {name!r}")
