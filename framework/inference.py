"""Run a trained checkpoint on images from Python: `Predictor.from_checkpoint(path).predict(image_or_path)`.

The checkpoint carries everything needed: the weights (the EMA's when training used one), the config the model
was built from and the class names, so inference needs no dataset. Images go through the run's own validation
pipeline (resize + normalize) and the same collate as evaluation, so `predict` gives exactly the detections
`tools/test.py` scores for the same image.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from framework.config.overrides import with_new_settings
from framework.data.datasets.coco import decode_rgb, detection_sample
from framework.data.loader import collate
from framework.engine.checkpoint import load_checkpoint

ImageInput = str | os.PathLike | Tensor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def load_image(image: ImageInput) -> Tensor:
    """A path (decoded as RGB) or a uint8 CHW tensor, as a uint8 CHW tensor."""
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.dtype != torch.uint8:
            raise ValueError(f"expected a uint8 CHW image tensor, got {image.dtype} of shape {tuple(image.shape)}")
        return image.as_subclass(Tensor)
    return decode_rgb(Path(image), "input image")


def model_from_config(config: DictConfig) -> nn.Module:
    """The detector described by a run's saved config (without weights)."""
    from framework.config.instantiation import instantiate

    return instantiate(config.model)


class Predictor:
    """A trained detector with its preprocessing and class names; `predict` takes paths or uint8 images.

    Built from a checkpoint (`from_checkpoint`) or from parts (`Predictor(model, transforms, classes)`), so it also
    wraps a model that was never saved.
    """

    def __init__(self, model: nn.Module, transforms: Any, classes: Sequence[str], device: str | torch.device = "cpu",
                 score_thr: float = 0.0, config: DictConfig | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.transforms, self.classes, self.score_thr, self.config = transforms, list(classes), score_thr, config

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu", score_thr: float = 0.0,
                        overrides: DictConfig | dict | None = None, allow_targets: Sequence[str] = ()) -> "Predictor":
        """Build the model from the checkpoint's config, load its evaluated weights; `overrides` (a nested mapping,
        e.g. `{"model": {"head": {"score_thr": 0.3}}}`) is merged into that config first. The config's `_target_`s
        must lie in framework/torch/torchvision/timm or in the modules of `allow_targets` (the checkpoint's own
        `allow_targets` is ignored: trusting other code is the caller's decision)."""
        ckpt = load_inference_checkpoint(path)
        config = with_new_settings(OmegaConf.create(ckpt["config"]))
        if overrides:
            config = OmegaConf.merge(config, overrides)
        config.allow_targets = list(allow_targets)
        return cls.from_config(config, ckpt["model"], ckpt.get("meta", {}).get("classes"), device, score_thr)

    @classmethod
    def from_config(cls, config: DictConfig, state_dict: dict[str, Tensor], classes: Sequence[str] | None = None,
                    device: str | torch.device = "cpu", score_thr: float = 0.0) -> "Predictor":
        """Build from a full run config and weights. For callers that edit the config in ways a plain merge cannot
        (tools/infer.py replaces whole groups, e.g. `model/head/box_loss=ciou`, via `merge_saved_config`)."""
        from framework.config.instantiation import instantiate

        model = model_from_config(config)
        model.load_state_dict(state_dict)
        classes = list(classes or []) or [str(i) for i in range(model.num_classes)]
        return cls(model, instantiate(config.pipeline.val), classes, device, score_thr, config)

    def preprocess(self, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """The validation pipeline applied to one uint8 image (with an empty target)."""
        return detection_sample(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 0, self.transforms)

    @property
    def has_masks(self) -> bool:
        """Whether the model predicts instance masks (a mask head: Mask R-CNN, YOLO-seg)."""
        return bool(getattr(self.model, "needs_masks", False))

    @torch.no_grad()
    def predict_batch(self, images: Sequence[ImageInput], rle: bool = False) -> list[dict[str, Any]]:
        """Detections for several images at once (one padded batch): per image `boxes` (XYXY, original pixels),
        `scores`, `labels` and `names`, scores at least `score_thr`, best first; a mask model adds `masks` (bool
        [N, H, W] at the image's original size) and, with `rle=True`, `rles` (COCO compressed RLE dicts, `counts`
        as text: what a results file or a JSON answer holds)."""
        raw = [load_image(im) for im in images]
        batch = collate([self.preprocess(im) for im in raw]).to(self.device)
        orig_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in raw]
        outputs = self.model(batch.images, image_sizes=batch.image_sizes, orig_sizes=orig_sizes)
        results = []
        for det in outputs:
            det = {k: v.detach().cpu() for k, v in det.items()}
            keep = det["scores"] >= self.score_thr
            order = det["scores"][keep].argsort(descending=True)
            det = {k: v[keep][order] for k, v in det.items()}
            det["names"] = [self.classes[int(k)] if 0 <= int(k) < len(self.classes) else str(int(k))
                            for k in det["labels"]]
            if rle and "masks" in det:
                from framework.evaluation.masks import encode_masks

                det["rles"] = encode_masks(det["masks"])
            results.append(det)
        return results

    def predict(self, image: ImageInput, rle: bool = False) -> dict[str, Any]:
        """Detections for one image (a path or a uint8 CHW tensor); see `predict_batch`."""
        return self.predict_batch([image], rle=rle)[0]


def load_inference_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's contents, refused early (CheckpointError, one paragraph saying what the file holds and what
    to do) when it is not a checkpoint of this framework with `model` weights and a `config`."""
    return load_checkpoint(path, purpose="model")


def find_images(source: str | os.PathLike) -> list[Path]:
    """A file, every image in a folder (sorted), or a glob pattern's images; a clear error when there are none."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        where = f"folder {path}"
    elif any(ch in text for ch in "*?["):
        from glob import glob

        found = sorted(Path(p) for p in glob(os.path.expanduser(text), recursive=True)
                       if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        where = f"pattern {text!r}"
    else:
        raise FileNotFoundError(f"input={text}: no such file or folder. Give an image, a folder of images or a glob "
                                "pattern (quoted, e.g. input='data/*.jpg').")
    if not found:
        raise FileNotFoundError(f"input={text}: the {where} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    return found


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]


__all__ = ["Predictor", "chunks", "find_images", "load_image", "load_inference_checkpoint", "model_from_config"]


def __getattr__(name: str) -> Any:
    if name == "Detector":  # the pre-0.2 name of Predictor
        warnings.warn("framework.inference.Detector is deprecated and will be removed in the next release; use "
                      "framework.inference.Predictor (the same class).", DeprecationWarning, stacklevel=2)
        return Predictor
    raise AttributeError(f"module 'framework.inference' has no attribute {name!r}")
