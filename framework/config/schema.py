"""Typed schemas for the config keys that are settings rather than components.

Hydra merges every YAML file and command-line override into these dataclasses, so `trainer.max_epochs=abc`
is refused while the config is composed, before any work starts. Component nodes (those with `_target_`) are
checked against their class signature instead (see `validation.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: str = MISSING
    # null: from the data (classes.txt, data.yaml `names`, COCO categories, the Cityscapes label set); a number is
    # checked against the data before training
    num_classes: Optional[int] = None
    data: Optional[str] = None  # dataset=yolo: path to an ultralytics data.yaml
    min_size: int = 800  # shorter side after resizing
    max_size: Optional[int] = 1333  # longer side cap
    img_size: int = 640  # square training size of the mosaic/letterbox pipelines (pipeline=yolo_style)
    metric: str = "coco"  # coco (12 COCO box numbers) | voc07 (VOC AP@0.5, 11-point) | voc12 (VOC AP@0.5, area)
    batch_size: int = 2
    val_batch_size: int = 2
    num_workers: int = 2
    group_by_aspect_ratio: bool = True  # batch landscape and portrait images separately (less padding)
    scan_images: bool = True  # check every image file (exists, complete, decodable) before training starts
    # error: stop and list the bad files | skip: train without them, counted per epoch | repair: decode what a
    # truncated file holds (counted), stop on files that cannot be repaired
    on_bad_image: str = "error"
    train: Any = MISSING
    val: Any = MISSING


@dataclass
class EMAConfig:
    enabled: bool = False  # evaluate and save best.pth with an exponential moving average of the weights
    decay: float = 0.9999  # the average spans about 1/(1-decay) steps
    tau: float = 2000.0  # ramp: decay × (1 − exp(−step/tau)), so the random init is soon forgotten


@dataclass
class TrainerConfig:
    max_epochs: int = 12
    eval_interval: int = 1  # evaluate every N epochs (and after the last one)
    log_interval: int = 20  # iterations between log lines / progress updates
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    grad_clip_norm: Optional[float] = None
    # auto: the evaluator's main number (bbox/mAP for COCO, for a mask model too; voc_mAP for VOC); or any metric key,
    # e.g. segm/mAP (a mask model's mask AP), bbox/mAP_50
    best_metric: str = "auto"
    progress_bar: bool = True
    channels_last: bool = False  # NHWC memory format: faster convolutions on recent CPUs and on GPUs
    cudnn_benchmark: bool = True  # GPU: let cuDNN time its algorithms per input shape (off when deterministic)
    compile: bool = False  # torch.compile the backbone and neck in place (checkpoint keys unchanged)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds a GradScaler)
    accumulate: int = 1  # batches per optimizer step (gradient accumulation)
    ema: EMAConfig = field(default_factory=EMAConfig)
    checkpoint_interval: int = 0  # also keep epoch_N.pth every N epochs (0: only last.pth and best.pth)
    keep_checkpoints: Optional[int] = 3  # how many epoch_N.pth to keep (null: all)
    patience: Optional[int] = None  # stop after this many epochs without a new best (null: never)
    max_time: Optional[float] = None  # wall-clock budget of this invocation in hours (null: none)
    sync_bn: bool = False  # under torchrun, BatchNorm → SyncBatchNorm (statistics over the global batch)
    find_unused_parameters: bool = False  # DDP option for models whose forward skips some parameters
    vis_images: int = 4  # validation images with predicted and ground-truth boxes in TensorBoard per evaluation
    skip_nonfinite: int = 0  # steps with a NaN/inf loss to skip (no update) before stopping; 0: stop at the first


@dataclass
class EvaluationConfig:
    backend: str = "pycocotools"  # pycocotools | faster_coco_eval (same 12 numbers, `pip install faster-coco-eval`)
    plots: bool = True  # pr_curve.png, confusion_matrix.png, f1_curve.png in the run folder and TensorBoard


@dataclass
class TrainConfig:
    model: Any = MISSING
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    pipeline: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # name -> callback node (configs/callbacks/default.yaml); `~callbacks.NAME` removes one, `+callbacks.NAME._target_`
    # adds one (docs/callbacks.md)
    callbacks: Dict[str, Any] = field(default_factory=dict)
    experiment_name: str = MISSING
    work_dir: str = MISSING
    seed: int = 0
    deterministic: bool = False
    resume: Any = False  # true: the newest last.pth of this experiment; or a checkpoint path
    # module prefixes whose classes/functions a config's `_target_` may name, besides framework., torch.,
    # torchvision. and timm. (framework/config/instantiation.py); e.g. allow_targets=[mypackage.] for your own components
    allow_targets: List[str] = field(default_factory=list)


# The tools' own keys. Each tool config (configs/test.yaml, …) is configs/train.yaml plus one of these: the values
# below are the keys' only defaults (the YAML files set none of them but browse's `out`, an interpolation).


@dataclass
class TestConfig(TrainConfig):
    checkpoint: str = MISSING
    output_dir: Optional[str] = None  # default: <run dir of the checkpoint>/eval/<timestamp>


@dataclass
class BrowseConfig(TrainConfig):
    num: int = 16  # samples in the grid, drawn at random indices (seeded by `seed`)
    epoch: int = 0  # show the pipeline as in this epoch: close-mosaic, GridMask probability ramp
    split: str = "train"  # train | val
    out: Optional[str] = None  # PNG path; configs/browse.yaml sets the default (in the run folder)
    columns: Optional[int] = None  # tiles per row; default: ceil(sqrt(num))


@dataclass
class EvalResultsConfig(TrainConfig):
    results: str = MISSING  # a COCO results JSON (image_id, category_id, bbox and/or segmentation, score per record)


@dataclass
class InferConfig(TrainConfig):
    checkpoint: str = MISSING
    input: str = MISSING  # an image, a folder of images, or a quoted glob pattern
    output: Optional[str] = None  # default: <run dir of the checkpoint>/infer_<time>
    score_thr: float = 0.3  # detections below are neither drawn nor written
    batch_size: int = 8  # images per forward pass
    save_images: bool = True  # write each image with its boxes drawn (the JSON is always written)


@dataclass
class AnalyzeConfig(TrainConfig):
    input_size: List[int] = field(default_factory=lambda: [800, 1333])  # (height, width) of the random input images
    batch_size: int = 1  # images per forward pass for the latency (FLOPs are per image)
    latency_runs: int = 20  # timed forward passes after the warm-up; 0 skips the latency measurement
    out: Optional[str] = None  # JSON report path; default: <run dir>/analysis.json


@dataclass
class ExportConfig(TrainConfig):
    checkpoint: str = MISSING
    format: str = "onnx"  # onnx (the only format so far)
    # default: next to the checkpoint, <checkpoint folder>/<checkpoint name>.onnx; a folder: <folder>/<name>.onnx
    output: Optional[str] = None
    # true: decoding, score threshold and NMS in the graph, fixed-shape outputs; false: dense boxes and scores
    nms: bool = True
    dynamic: bool = True  # free batch, height and width (multiples of 32) where the model allows
    opset: int = 18
    # (height, width) of the tracing input; the fixed input size when dynamic=false
    input_size: List[int] = field(default_factory=lambda: [640, 640])
    verify: bool = True  # run onnxruntime and PyTorch on num_verify images and compare their detections
    verify_images: Optional[str] = None  # an image, folder or glob; default: the checkpoint dataset's val images
    num_verify: int = 4


@dataclass
class PlotRunConfig(TrainConfig):
    run_dir: str = MISSING  # a training run folder (work_dirs/<experiment>/<time>)
    checkpoint: Optional[str] = None  # for the PR/F1/confusion plots; default: the run's best.pth, else last.pth
    plots: bool = True  # also evaluate the checkpoint to redraw the PR/F1/confusion plots (needs the dataset)


@dataclass
class CheckDatasetConfig(TrainConfig):
    split: str = "all"  # train | val | all
    # also decode every image fully: finds damage inside JPEG data, about 10x slower (JPEGs cut short, the repairable
    # ones, are found without it)
    decode: bool = False
    workers: Optional[int] = None  # threads reading the files; default: CPU cores + 4, at most 16


TOOL_SCHEMAS = {"test": TestConfig, "browse": BrowseConfig, "eval_results": EvalResultsConfig, "infer": InferConfig,
                "analyze": AnalyzeConfig, "export": ExportConfig, "plot_run": PlotRunConfig,
                "check_dataset": CheckDatasetConfig}


def tool_schema(cls: type) -> DictConfig:
    """A tool's schema as its config merges it, after configs/train.yaml: its own keys with their types and
    defaults, and the keys it shares with TrainConfig left `???`, so that merging it types the config as `cls`
    without resetting what train.yaml, its groups and an experiment set (a dataclass default would)."""
    node = OmegaConf.structured(cls)
    for f in fields(TrainConfig):
        node[f.name] = MISSING
    return node


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, cls in TOOL_SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=tool_schema(cls))
