"""Config in, plain objects out: datasets → pipeline → loaders, model, optimizer, scheduler, evaluation, callbacks,
and the Trainer that holds them. Nothing below this module sees a config object.

`build_trainer(cfg).fit()` is a training run (tools/train.py); `build_evaluation(cfg)` gives the model and the
evaluation pass without training parts (tools/test.py, tools/plot_run.py).
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from framework.config.validation import ConfigError
from framework.data.classes import check_num_classes, classes_source
from framework.data.loader import build_dataloader
from framework.data.pipeline_dataset import PipelineDataset
from framework.engine import distributed
from framework.engine.checkpoint import find_last_checkpoint, load_checkpoint
from framework.engine.evaluation import Evaluation
from framework.engine.optim import build_optimizer, scaled_lr, split_optimizer_node
from framework.engine.recipes import recipe_hint
from framework.engine.schedulers import build_scheduler, check_fits_time_budget
from framework.engine.setup import compile_model, per_rank_batch_size, resolve_device, seed_everything
from framework.engine.trainer import Trainer
from framework.evaluation.build import build_evaluator

logger = logging.getLogger("framework")


def config_to_save(cfg: DictConfig) -> dict[str, Any]:
    """The config as composed, with interpolations kept (so `tools/test.py dataset.root=…` still flows into
    `dataset.val.root`), except the values that only Hydra's runtime can resolve (run name and folder)."""
    saved = OmegaConf.to_container(cfg, resolve=False)
    for key in ("experiment_name", "work_dir"):
        if key in cfg:
            saved[key] = cfg[key]
    return saved


def build_evaluation(cfg: DictConfig, training: bool = False) -> tuple[nn.Module, Evaluation]:
    """Seed, join the process group (under torchrun), build the validation data, the model (on its device) and the
    evaluation pass. The class count comes from the data and is written into `cfg` for the saved config."""
    from framework.config.instantiation import check_targets, instantiate
    from framework.data.bad_images import screen_dataset

    check_targets(cfg)  # every component, before anything is imported or built (configs from checkpoints too)
    info = distributed.init_distributed()
    seed_everything(cfg.seed, cfg.deterministic)  # the same initial weights on every rank
    t, data = cfg.trainer, cfg.dataset
    device = resolve_device(t.device, info.local_rank)
    val_set = screen_dataset(build_dataset(data.val, "val", cfg.model, data.on_bad_image,
                                      transforms=instantiate(cfg.pipeline.val)), "val",
                             substitute=True, **_bad_image_policy(cfg))
    given = data.num_classes
    data.num_classes = check_num_classes(given, val_set)  # the model and the saved config get the data's count
    if given is None:
        logger.info(f"{val_set.num_classes} classes from {classes_source(val_set)}: {', '.join(val_set.classes)}")
    model = instantiate(cfg.model)
    if model.num_classes != val_set.num_classes:
        raise ConfigError(
            f"The model predicts {model.num_classes} classes (model.head.num_classes) but the dataset at "
            f"{data.root} has {val_set.num_classes} ({', '.join(val_set.classes[:10])}"
            f"{'…' if val_set.num_classes > 10 else ''}); leave model.head.num_classes=${{dataset.num_classes}}.")
    if training and t.sync_bn and info.enabled:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            n_sync = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
            logger.info(f"trainer.sync_bn: {n_sync} BatchNorm layers compute statistics over the global batch")
        else:
            logger.warning("trainer.sync_bn=true is ignored on CPU (torch's SyncBatchNorm runs on GPUs only); "
                           "each process keeps its own BatchNorm statistics.")
    model.to(device, memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)
    torch.backends.cudnn.benchmark = bool(t.cudnn_benchmark) and not cfg.deterministic
    if t.compile:
        compile_model(model)
    if info.enabled:
        seed_everything(cfg.seed + info.rank, cfg.deterministic)  # then different random draws per rank
    val_loader = build_dataloader(val_set, max(1, data.val_batch_size // info.world_size), data.num_workers,
                                  shuffle=False, group_by_aspect_ratio=data.group_by_aspect_ratio,
                                  rank=info.rank, world_size=info.world_size)
    evaluator = build_evaluator(val_set, data.metric, cfg.evaluation.backend)
    return model, Evaluation(val_loader, evaluator, device, t.channels_last, t.progress_bar)


def build_trainer(cfg: DictConfig) -> Trainer:
    """Everything a training run needs, from its composed config; `trainer.fit()` runs it (continuing from
    `resume=` when set)."""
    from framework.config.instantiation import instantiate
    from framework.data.bad_images import screen_dataset

    resume_from = resume_path(cfg)
    if resume_from is not None:  # a file that cannot be resumed is refused before the data and model are built
        load_checkpoint(resume_from, purpose="resume")
    model, evaluation = build_evaluation(cfg, training=True)
    info, t, data = distributed.current(), cfg.trainer, cfg.dataset
    batch_size = per_rank_batch_size(data.batch_size, info.world_size)
    train_raw = screen_dataset(build_dataset(data.train, "train", cfg.model, data.on_bad_image), "train",
                               **_bad_image_policy(cfg))
    val_set = evaluation.loader.dataset
    if list(train_raw.classes) != list(val_set.classes):
        raise ConfigError(
            f"The training split's classes ({len(train_raw.classes)}, from {classes_source(train_raw)}) differ "
            f"from the validation split's ({len(val_set.classes)}, from {classes_source(val_set)}); both splits "
            "must use one class list.")
    train_set = PipelineDataset(train_raw, instantiate(cfg.pipeline.train), on_bad_image=data.on_bad_image)
    if len(train_set) < data.batch_size:
        raise ConfigError(f"The training set has {len(train_set)} images, fewer than dataset.batch_size="
                          f"{data.batch_size}; lower the batch size.")
    train_loader = build_dataloader(train_set, batch_size, data.num_workers, shuffle=True, seed=cfg.seed,
                                    drop_last=True, group_by_aspect_ratio=data.group_by_aspect_ratio,
                                    pin_memory=evaluation.device.type == "cuda", rank=info.rank,
                                    world_size=info.world_size)
    node, settings = split_optimizer_node(cfg.optimizer)
    lr_scale = lr_scale_factor(float(node.lr), settings.get("auto_scale_lr") or {}, batch_size, info.world_size,
                               t.accumulate)
    optimizer = build_optimizer(instantiate(node), model, lr_scale=lr_scale, **(settings.get("paramwise") or {}))
    scheduler = build_scheduler(instantiate(cfg.scheduler), optimizer, math.ceil(len(train_loader) / t.accumulate),
                                lr_scale=lr_scale)
    if t.max_time is not None:
        check_fits_time_budget(scheduler)
    hint = recipe_hint(model, scheduler)
    if hint:
        logger.warning(hint)
    if t.best_metric == "auto":  # the evaluator's main number: bbox/mAP (COCO), voc_mAP (VOC)
        t.best_metric = evaluation.primary_metric
    trainer = Trainer(
        model, train_loader, optimizer, scheduler, build_callbacks(cfg, evaluation), work_dir=cfg.work_dir,
        max_epochs=t.max_epochs, device=evaluation.device, accumulate=t.accumulate, precision=t.precision,
        grad_clip_norm=t.grad_clip_norm, channels_last=t.channels_last, log_interval=t.log_interval,
        classes=evaluation.class_names, cfg=config_to_save(cfg), find_unused_parameters=t.find_unused_parameters)
    trainer.resume_from = resume_from
    return trainer


def build_callbacks(cfg: DictConfig, evaluation: Evaluation) -> dict[str, Any]:
    """`cfg.callbacks` (name → node), instantiated; a node with `_partial_: true` whose class takes `evaluation`
    gets the run's evaluation pass."""
    from framework.config.instantiation import instantiate

    built: dict[str, Any] = {}
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None:
            continue
        callback = instantiate(node)
        if isinstance(callback, functools.partial):
            takes = inspect.signature(callback.func).parameters
            callback = callback(evaluation=evaluation) if "evaluation" in takes else callback()
        built[str(name)] = callback
    return built


def build_for_checkpoint(checkpoint: str | Path, cfg: DictConfig, overrides: list[str]) -> tuple[nn.Module, Evaluation, int]:
    """The model of a saved checkpoint, with its weights, and its evaluation pass: the checkpoint's own config, with
    the command line's `overrides` taken from the freshly composed `cfg` (tools/test.py, tools/plot_run.py).
    Returns (model, evaluation, the checkpoint's epoch)."""
    from framework.config.overrides import merge_saved_config

    ckpt = load_checkpoint(checkpoint, purpose="model")
    model, evaluation = build_evaluation(merge_saved_config(ckpt["config"], cfg, overrides))
    model.load_state_dict(ckpt["model"])
    return model, evaluation, int(ckpt.get("epoch", 0))


def lr_scale_factor(lr: float, auto_scale: dict[str, Any], batch_per_rank: int, world_size: int,
                    accumulate: int) -> float:
    """The linear scaling rule's factor (1 when optimizer.auto_scale_lr.base_batch_size is null); logged."""
    global_batch = batch_per_rank * world_size * accumulate
    parts = f"{batch_per_rank} per process x {world_size} process(es) x {accumulate} accumulated"
    base = auto_scale.get("base_batch_size")
    if not base:
        logger.info(f"lr {lr:g} for a global batch of {global_batch} ({parts}); set "
                    f"optimizer.auto_scale_lr.base_batch_size to scale it with the batch size.")
        return 1.0
    effective = scaled_lr(lr, global_batch, int(base))
    logger.info(f"Linear LR scaling: global batch {global_batch} ({parts}) / base {base} -> lr {lr:g} x "
                f"{global_batch / base:g} = {effective:g}")
    return effective / lr


def resume_path(cfg: DictConfig) -> Path | None:
    """`resume=true`: the newest last.pth of this experiment's other runs; `resume=<path>`: that file."""
    resume = cfg.get("resume", False)
    if resume in (False, None, "", "false", "False"):
        return None
    if resume is True or resume in ("true", "True"):
        experiment_dir = Path(cfg.work_dir).parent
        found = find_last_checkpoint(experiment_dir, exclude=cfg.work_dir)
        if found is None:
            raise ConfigError(f"resume=true but no run of this experiment has checkpoints/last.pth under "
                              f"{experiment_dir}; pass resume=<path/to/last.pth>, or check experiment_name.")
        return found
    path = Path(str(resume))
    if path.is_dir():
        path = path / "checkpoints" / "last.pth" if (path / "checkpoints").is_dir() else path / "last.pth"
    if not path.is_file():
        raise ConfigError(f"resume={resume}: no checkpoint at {path}.")
    return path


def model_needs_masks(model: DictConfig) -> bool:
    """Whether the configured model's head is a mask head (`needs_masks = True` on its class; `framework.protocols.
    Head`), read from the class without building anything, so the datasets know before the model exists whether
    to decode masks: a box model's data reads none."""
    from hydra.utils import get_class

    head = model.get("head")
    node = head if isinstance(head, DictConfig) else model
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not isinstance(target, str):
        return False
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - instantiating the model reports a bad target with its own message
        return False
    return bool(getattr(cls, "needs_masks", False))


def build_dataset(node: DictConfig, split: str, model: DictConfig, on_bad_image: str = "error", **kwargs: Any) -> Any:
    """One split of `dataset.*`, with `with_masks=True` when the model trains on masks. A dataset with masks also
    gets `dataset.on_bad_image`: under `skip` it drops bad mask annotations (counted like bad boxes) rather than
    stopping the build."""
    from framework.config.instantiation import instantiate

    masks = model_needs_masks(model)
    if not masks and not node.get("with_masks", False):
        return instantiate(node, **kwargs)
    takes = _parameters(node.get("_target_"))
    if takes is not None and "with_masks" not in takes:
        why = (f"the model's head ({model.get('head', {}).get('_target_')}) trains on instance masks" if masks
               else f"dataset.{split}.with_masks is set")
        raise ConfigError(
            f"{why}, but dataset.{split} ({node.get('_target_')}) has no masks to give (it takes no `with_masks`). "
            "Use a dataset with masks (COCO, VOC2012 SegmentationObject, Cityscapes, YOLO-seg labels, shapes) or a "
            "box model.")
    policy = {"on_bad_image": on_bad_image} if takes is None or "on_bad_image" in takes else {}
    return instantiate(node, **policy, **({"with_masks": True} if masks else {}), **kwargs)


def _parameters(target: Any) -> set[str] | None:
    """The keyword names the class `target` (a dotted path) takes; None when they cannot be read (then the call
    itself reports what is wrong)."""
    from hydra.utils import get_class

    try:
        params = inspect.signature(get_class(str(target))).parameters.values()
    except Exception:  # noqa: BLE001
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _bad_image_policy(cfg: DictConfig) -> dict[str, Any]:
    from framework.data.scan import scan_images

    info = distributed.current()

    def scanned(dataset: Any) -> Any:  # rank 0 reads the image files, every rank applies what it found
        return distributed.broadcast_object(scan_images(dataset) if info.is_main else None)

    return dict(scan=cfg.dataset.scan_images, on_bad_image=cfg.dataset.on_bad_image, scanner=scanned)
