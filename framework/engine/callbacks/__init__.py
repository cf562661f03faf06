"""The built-in callbacks, one behaviour each (configs/callbacks/default.yaml lists them); see base.py for the
events a callback may define and docs/callbacks.md for writing your own."""
from framework.engine.callbacks.base import Callback, CallbackError, StopTraining
from framework.engine.callbacks.checkpoint import Checkpoint
from framework.engine.callbacks.early_stop import EarlyStopping
from framework.engine.callbacks.ema import EMA
from framework.engine.callbacks.evaluation import EvalSchedule
from framework.engine.callbacks.metrics_log import MetricsLog
from framework.engine.callbacks.nonfinite import NonFiniteLoss, NonFiniteLossError
from framework.engine.callbacks.pipeline_epoch import PipelineEpoch
from framework.engine.callbacks.progress import Progress
from framework.engine.callbacks.tensorboard import TensorBoard
from framework.engine.callbacks.visualization import Visualization

__all__ = ["Callback", "CallbackError", "Checkpoint", "EMA", "EarlyStopping", "EvalSchedule", "MetricsLog",
           "NonFiniteLoss", "NonFiniteLossError", "PipelineEpoch", "Progress", "StopTraining", "TensorBoard",
           "Visualization"]
