"""Config-driven object detection. `from framework import Predictor` gives the inference API
(`Predictor.from_checkpoint(path).predict(image)`); the rest lives in the subpackages."""
from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:  # imported on first use: `import framework.models` stays light
    if name in ("Predictor", "Detector"):
        from framework.inference import Predictor

        if name == "Detector":  # the pre-0.2 name; `framework.models.Detector` is the nn.Module
            warnings.warn("framework.Detector is deprecated and will be removed in the next release; use "
                          "framework.Predictor (the same class).", DeprecationWarning, stacklevel=2)
        return Predictor
    raise AttributeError(f"module 'framework' has no attribute {name!r}")
