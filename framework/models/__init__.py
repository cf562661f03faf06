from framework.models.detector import Detector

__all__ = ["Detector"]
