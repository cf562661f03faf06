#!/usr/bin/env python
"""Export a trained checkpoint to ONNX and check onnxruntime finds the detections PyTorch finds:

    python tools/export.py checkpoint=work_dirs/<exp>/<time>/checkpoints/best.pth
    python tools/export.py checkpoint=… output=detector.onnx input_size=[800,1344] verify_images='photos/*.jpg'
    python tools/export.py checkpoint=… nms=false dynamic=false

The graph takes `images` [B, 3, H, W] (normalized, padded to multiples of 32) and `image_sizes` [B, 2] (each
image's h, w before padding); with nms=true it returns `boxes` [B, K, 4], `scores` [B, K], `labels` [B, K] and
`num_detections` [B] (K = model.head.max_per_img), with nms=false every prior's decoded `boxes` [B, N, 4] and class
`scores` [B, N, C]. Resizing and normalization stay outside (see framework/export.py). The model comes from the
config saved in the checkpoint; model overrides on the command line replace the matching parts, as in
tools/test.py. Needs the export extra: pip install -e ".[export]".
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from framework.config.instantiation import instantiate
from omegaconf import DictConfig

from framework.config.cli import hydra_cli
from framework.config.overrides import merge_saved_config
from framework.config.validation import ConfigError
from framework.export import EXPORT_FORMATS, ExportDependencyError, ExportError, describe_onnx, export_onnx, verify_onnx
from framework.inference import Predictor, find_images, load_image, load_inference_checkpoint

# keys of this tool's own run, never merged into the checkpoint's config
OWN_KEYS = ("format", "output", "nms", "dynamic", "opset", "input_size", "verify", "verify_images", "num_verify")


def output_path(cfg: DictConfig) -> Path:
    """`output`, or `<name>.onnx` inside it when it is a folder, or next to the checkpoint."""
    name = Path(cfg.checkpoint).with_suffix(".onnx").name
    if not cfg.output:
        return Path(cfg.checkpoint).with_suffix(".onnx")
    out = Path(cfg.output).expanduser()
    return out / name if out.is_dir() or str(cfg.output).endswith(("/", "\\")) else out


def verification_images(cfg: DictConfig, detector: Predictor) -> list:
    """`num_verify` preprocessed images: from `verify_images`, else the first of the checkpoint dataset's val set."""
    if cfg.verify_images:
        try:
            paths = find_images(cfg.verify_images)
        except FileNotFoundError as exc:  # find_images speaks of tools/infer.py's `input`
            raise FileNotFoundError(str(exc).replace("input=", "verify_images=")) from None
        return [detector.preprocess(load_image(p))[0] for p in paths[:cfg.num_verify]]
    try:
        dataset = instantiate(detector.config.dataset.val, transforms=detector.transforms)
    except Exception as exc:  # noqa: BLE001 - instantiate wraps the dataset's own error
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise FileNotFoundError(f"The checkpoint's validation images, used to check the export, cannot be loaded: "
                                f"{str(cause).splitlines()[0]} Pass verify_images=<image, folder or glob> (or "
                                "dataset.root=…), or verify=false.") from None
    return [dataset[i][0] for i in range(min(cfg.num_verify, len(dataset)))]


@hydra_cli("export")
def main(cfg: DictConfig) -> None:
    if str(cfg.format).lower() not in EXPORT_FORMATS:
        raise ConfigError(f"format={cfg.format} is not supported; supported formats: {', '.join(EXPORT_FORMATS)}.")
    if len(cfg.input_size) != 2:
        raise ConfigError(f"input_size must be [height, width], got {list(cfg.input_size)}.")
    if cfg.verify and cfg.num_verify < 1:
        raise ConfigError(f"num_verify must be at least 1 (images compared), got {cfg.num_verify}; or verify=false.")
    ckpt = load_inference_checkpoint(cfg.checkpoint)
    overrides = [o for o in HydraConfig.get().overrides.task if o.split("=", 1)[0].lstrip("+~") not in OWN_KEYS]
    config = merge_saved_config(ckpt["config"], cfg, overrides)
    detector = Predictor.from_config(config, ckpt["model"], ckpt.get("meta", {}).get("classes"), "cpu")
    out = output_path(cfg)

    h, w = cfg.input_size
    shape = "batch, height and width free" if cfg.dynamic else f"fixed input 1x3x{h}x{w}"
    print(f"Exporting {cfg.checkpoint} to ONNX ({'post-processing in the graph' if cfg.nms else 'dense outputs'}, "
          f"{shape}); a ResNet-50 takes about a minute…", flush=True)
    start = time.perf_counter()
    try:
        path = export_onnx(detector, out, list(cfg.input_size), nms=cfg.nms, dynamic=cfg.dynamic, opset=cfg.opset)
    except (ExportError, ExportDependencyError) as exc:
        raise ConfigError(str(exc)) from None
    size_mb = path.stat().st_size / 2**20
    print(f"Exported {path} ({size_mb:.1f} MB, opset {cfg.opset}) in {time.perf_counter() - start:.0f} s\n"
          f"{describe_onnx(path)}")
    if not cfg.verify:
        return
    images = verification_images(cfg, detector)
    try:
        report = verify_onnx(path, detector.model, images)
    except ExportDependencyError as exc:
        raise ConfigError(str(exc)) from None
    print(report.summary())
    if not report.ok:
        print(f"The exported file is kept at {path} for inspection.", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
