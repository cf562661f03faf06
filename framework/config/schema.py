"""Typed schemas for the config keys that are settings rather than components.

Hydra merges every YAML file and command-line override into these dataclasses, so `trainer.max_epochs=abc`
is refused while the config is composed, before any work starts. Component nodes (those with `_target_`) are
checked against their class signature instead (see `validation.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


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
    best_metric: str = "auto"  # auto: the evaluator's main number (bbox_mAP for COCO, voc_mAP for VOC)
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


@dataclass
class TestConfig(TrainConfig):
    checkpoint: str = MISSING
    output_dir: Optional[str] = None  # default: <run dir of the checkpoint>/eval/<timestamp>


@dataclass
class BrowseConfig(TrainConfig):
    num: int = 16  # samples in the grid
    epoch: int = 0  # whose pipeline state to show (close-mosaic, GridMask ramp)
    split: str = "train"  # train | val
    out: Optional[str] = None  # PNG path; configs/browse.yaml sets the default
    columns: Optional[int] = None  # default: ceil(sqrt(num))


@dataclass
class EvalResultsConfig(TrainConfig):
    results: str = MISSING  # a COCO-format results JSON (list of image_id, category_id, bbox, score)


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
    input_size: List[int] = field(default_factory=lambda: [800, 1333])  # (height, width) of the analysed input
    batch_size: int = 1
    latency_runs: int = 20  # timed forward passes (after warm-up) for the latency figures
    out: Optional[str] = None  # JSON report path; default: <run dir>/analysis.json


@dataclass
class ExportConfig(TrainConfig):
    checkpoint: str = MISSING
    format: str = "onnx"
    output: Optional[str] = None  # default: next to the checkpoint, <checkpoint name>.onnx
    nms: bool = True  # post-processing (decoding, score threshold, NMS) inside the exported graph
    dynamic: bool = True  # dynamic batch and image size where the model allows
    opset: int = 18
    input_size: List[int] = field(default_factory=lambda: [640, 640])  # (height, width) of the tracing input
    verify: bool = True  # compare onnxruntime's detections with PyTorch's on sample images
    verify_images: Optional[str] = None  # images for the check; default: the checkpoint dataset's val images
    num_verify: int = 4


@dataclass
class PlotRunConfig(TrainConfig):
    run_dir: str = MISSING  # a training run folder (work_dirs/<experiment>/<time>)
    checkpoint: Optional[str] = None  # for the PR/F1/confusion plots; default: the run's best.pth, else last.pth
    plots: bool = True  # also evaluate the checkpoint to redraw the PR/F1/confusion plots (needs the dataset)


@dataclass
class CheckDatasetConfig(TrainConfig):
    split: str = "all"  # train | val | all
    decode: bool = False  # also decode every image fully (finds damage inside JPEG data; ~10x slower)
    workers: Optional[int] = None  # threads reading the files; default: CPU cores + 4, at most 16


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="test_schema", node=TestConfig)
    cs.store(name="browse_schema", node=BrowseConfig)
    cs.store(name="eval_results_schema", node=EvalResultsConfig)
    cs.store(name="infer_schema", node=InferConfig)
    cs.store(name="analyze_schema", node=AnalyzeConfig)
    cs.store(name="export_schema", node=ExportConfig)
    cs.store(name="plot_run_schema", node=PlotRunConfig)
    cs.store(name="check_dataset_schema", node=CheckDatasetConfig)
