"""What `train_step.py` and `inference.py` share: the same detector built twice (ours and torchvision's), identical
weights and batches, and an alternating A/B timer.

Why this design: a ratio is only honest when both sides do the same work. So

* the networks are the same: our `retinanet_r50_fpn` / `fcos_r50_fpn` / `faster_rcnn_r50_fpn` / `mask_rcnn_r50_fpn` configs and
  torchvision's builders, with torchvision's freshly initialised weights copied into ours
  (`framework.models.convert_torchvision`), so both compute the same losses and detections;
* the trainable layers and normalization are the same: `scratch` trains everything with BatchNorm in train mode
  (torchvision's builders without weights); `finetune` is the usual fine-tuning of ImageNet weights, the stem and
  layer1 frozen and every BatchNorm a fixed affine map (torchvision's `FrozenBatchNorm2d`, our `norm_frozen`);
* the input is the same: images of one size (multiples of 32, so neither side pads) with the same boxes.
  torchvision's `GeneralizedRCNNTransform` normalizes and batches inside the model; its resize is made the identity
  (the images already have the size; without it torchvision would still run a 1.0-scale interpolation). Our side
  times the same normalization and our `collate`, as our data loader would do them;
* the clock alternates: A then B, round after round, after warm-up, so a noisy machine slows both alike; each side's
  median over rounds is reported with its spread (min and max), and the ratio of medians.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.models import detection
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.transforms.v2 import functional as TF

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framework.config.cli import check_overrides  # noqa: E402
from framework.config.instantiation import instantiate  # noqa: E402
from framework.data.loader import collate  # noqa: E402
from framework.models.convert_torchvision import TORCHVISION_MODELS, TWO_STAGE, convert_state_dict  # noqa: E402

ARCHS = tuple(TORCHVISION_MODELS)  # retinanet, fcos, faster_rcnn, mask_rcnn
SETTINGS = ("finetune", "scratch")
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # both sides' defaults


def _freeze_torchvision_backbone(model: nn.Module, trainable_layers: int = 3) -> None:
    """What torchvision's builders do when given weights: FrozenBatchNorm2d everywhere in the trunk, and only the
    last `trainable_layers` of (conv1, layer1..layer4) trained."""
    body = model.backbone.body

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, key).copy_(getattr(child, key).detach())
                setattr(module, name, frozen)
            else:
                swap(child)

    swap(body)
    trained = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    for name, p in body.named_parameters():
        p.requires_grad_(any(name.startswith(layer) for layer in trained))


def build_pair(arch: str, num_classes: int, setting: str, height: int, width: int,
               score_prior: float | None = None) -> tuple[nn.Module, nn.Module]:
    """(ours, torchvision's) with identical weights, on the CPU. `score_prior` sets both classifiers' bias so that
    every candidate scores about that probability: with random weights, scores otherwise stay under the score
    threshold and inference would skip NMS entirely, which no trained model does."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    config, builder, _ = TORCHVISION_MODELS[arch]
    torch.manual_seed(0)
    tv_classes = num_classes + 1 if arch in TWO_STAGE else num_classes
    theirs = getattr(detection, builder)(weights=None, weights_backbone=None, num_classes=tv_classes,
                                         min_size=min(height, width), max_size=max(height, width))
    theirs.transform.resize = lambda image, target=None: (image, target)
    overrides = [f"model={config}", f"dataset.num_classes={num_classes}"]
    if setting == "finetune":
        _freeze_torchvision_backbone(theirs)
        overrides += ["model.backbone.frozen_stages=1", "model.backbone.norm_frozen=true"]
    if score_prior is not None:
        _set_score_prior(theirs, arch, score_prior, num_classes)
    cfg = check_overrides("train", overrides)
    ours = instantiate(cfg.model)
    ours.load_state_dict(convert_state_dict(theirs.state_dict(), arch), strict=True)
    _check_same_trainable(ours, theirs)
    return ours, theirs


def _set_score_prior(model: nn.Module, arch: str, prior: float, num_classes: int) -> None:
    with torch.no_grad():
        if arch in TWO_STAGE:  # softmax over K + 1: the first n classes get `prior`, background the rest
            bias = model.roi_heads.box_predictor.cls_score.bias
            n = max(1, min(num_classes, int(0.9 / prior)))
            probs = torch.full_like(bias, 1e-6)
            probs[1:n + 1] = prior
            probs[0] = 1 - n * prior
            bias.copy_(probs.log())
        else:
            model.head.classification_head.cls_logits.bias.fill_(float(torch.tensor(prior / (1 - prior)).log()))
            if arch == "fcos":  # score = sqrt(cls * centerness): make centerness confident too
                model.head.regression_head.bbox_ctrness.bias.fill_(4.0)


def framework_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The optimizer a training run with `optimizer=sgd` builds for `model` (its config's options and parameter
    groups), at learning rate `lr`."""
    from framework.engine.optim import build_optimizer, split_optimizer_node

    node, settings = split_optimizer_node(check_overrides("train", ["optimizer=sgd", f"optimizer.lr={lr}"]).optimizer)
    return build_optimizer(instantiate(node), model, **(settings.get("paramwise") or {}))


def _check_same_trainable(ours: nn.Module, theirs: nn.Module) -> None:
    """The comparison is void unless both sides train the same number of weights."""
    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters() if p.requires_grad)

    if count(ours) != count(theirs):
        raise RuntimeError(f"trainable parameters differ: ours {count(ours):,}, torchvision {count(theirs):,}")


def synthetic_batch(batch: int, height: int, width: int, boxes_per_image: int, num_classes: int,
                    seed: int = 0, masks: bool = False) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Images in [0, 1] and targets with `boxes_per_image` boxes of varied size and shape per image; with `masks`,
    each box also gets an instance mask (uint8, the ellipse inscribed in the box)."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, height, width, generator=g) for _ in range(batch)]
    targets = []
    for i in range(batch):
        n = max(1, boxes_per_image - i % 3)  # unequal counts, as real batches have
        wh = torch.rand(n, 2, generator=g) * torch.tensor([width * 0.5, height * 0.5]) + 16
        xy = torch.rand(n, 2, generator=g) * (torch.tensor([width, height]) - wh)
        boxes = torch.cat([xy, xy + wh], 1)
        target = {"boxes": boxes, "labels": torch.randint(0, num_classes, (n,), generator=g)}
        if masks:
            target["masks"] = ellipse_masks(boxes, height, width)
        targets.append(target)
    return images, targets


def ellipse_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """uint8 [N, H, W]: the ellipse inscribed in each box."""
    ys = torch.arange(height, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None] + 0.5
    out = []
    for x0, y0, x1, y1 in boxes.tolist():
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        out.append(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1)
    return torch.stack(out).to(torch.uint8) if out else torch.zeros(0, height, width, dtype=torch.uint8)


def torchvision_targets(arch: str, targets: Sequence[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """torchvision's two-stage detectors reserve label 0 for background; its one-stage ones use labels as they are."""
    shift = 1 if arch in TWO_STAGE else 0
    return [{**t, "labels": t["labels"] + shift} for t in targets]


def ours_inputs(images: Sequence[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
    """What our data loader hands the model: normalized images, padded into one tensor by `collate`."""
    batch = collate([(TF.normalize(img, MEAN, STD), {}) for img in images])
    return batch.images, batch.image_sizes


def to_device(images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]], device: torch.device):
    return ([img.to(device) for img in images],
            [{k: v.to(device) for k, v in t.items()} for t in targets])


def alternate(fns: dict[str, Callable[[], object]], warmup: int, rounds: int,
              device: torch.device) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds of each call of each function, alternating between them round by round after `warmup` calls each;
    and on a GPU, each function's peak memory above what was allocated before its calls (activations, gradients,
    optimizer state: the two models' weights stay resident throughout and are not counted), in GiB."""
    peaks: dict[str, float] = {name: 0.0 for name in fns}

    def timed(name: str) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        fns[name]()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peaks[name] = max(peaks[name], (torch.cuda.max_memory_allocated(device) - before) / 2**30)
        return time.perf_counter() - start

    for name in fns:
        for _ in range(warmup):
            timed(name)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(fns)[::-1]  # neither side always runs right after the other
        for name in order:
            times[name].append(timed(name))
    return times, (peaks if device.type == "cuda" else {})


def summarize(times: list[float], images_per_call: int) -> dict[str, float]:
    per_s = [images_per_call / t for t in times]
    return {"median_img_s": statistics.median(per_s), "min_img_s": min(per_s), "max_img_s": max(per_s),
            "median_s": statistics.median(times), "rounds": len(times)}


def compare(times: dict[str, list[float]], images_per_call: int) -> dict[str, object]:
    """Both sides' summaries, the ratio of their medians (ours / torchvision, in images/s) and, as a check that
    holds up when the machine's load drifts, the median and range of the per-round ratios (each round times both
    sides back to back)."""
    paired = [t / o for o, t in zip(times["ours"], times["torchvision"])]
    ours, theirs = summarize(times["ours"], images_per_call), summarize(times["torchvision"], images_per_call)
    return {"ours": ours, "torchvision": theirs, "ratio": ours["median_img_s"] / theirs["median_img_s"],
            "round_ratio": {"median": statistics.median(paired), "min": min(paired), "max": max(paired)}}


def machine(device: torch.device, load_at_start: list[float] | None) -> dict[str, object]:
    """`benchmarks/pipeline.py`'s machine description (platform, cores, load average, versions) plus the device and
    torch's thread count."""
    from pipeline import machine_info

    info: dict[str, object] = {**machine_info(load_at_start), "device": str(device), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def add_common_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The options train_step.py and inference.py share."""
    parser.add_argument("--archs", default=",".join(ARCHS), help=f"comma-separated subset of {','.join(ARCHS)}")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--num-classes", type=int, default=80)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--channels-last", action="store_true", help="NHWC on both sides")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny images, 1 warm-up, 2 rounds")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / f"{name}.json")


def start(args: argparse.Namespace) -> tuple[torch.device, list[float] | None]:
    """Apply --quick and --threads; the device and the load average at the start."""
    if args.quick:
        args.height, args.width, args.batch, args.warmup, args.rounds = 128, 160, 2, 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from pipeline import load_avg

    return resolve_device(args.device), load_avg()


def result_row(arch: str, times: dict[str, list[float]], peaks: dict[str, float], batch: int,
               **extra: object) -> dict:
    """One detector's entry of the JSON, printed as one line as it is measured."""
    row = {"arch": arch, **compare(times, batch), **extra, "peak_memory_gib": peaks, "times_s": times}
    print(f"{arch}: ours {row['ours']['median_img_s']:.3g} img/s, torchvision {row['torchvision']['median_img_s']:.3g} "
          f"img/s, ratio {row['ratio']:.2f}; {extra}" + (f"; peak GiB {peaks}" if peaks else ""), flush=True)
    return row


def finish(name: str, args: argparse.Namespace, device: torch.device, load_at_start: list[float] | None,
           rows: list[dict]) -> dict:
    """Print the table and write the JSON: settings, machine, one row per detector."""
    print(markdown_table(rows, "img/s"))
    payload = {"benchmark": name, "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "machine": machine(device, load_at_start), "results": rows}
    write_json(args.out, payload)
    return payload


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"Wrote {path}")


def markdown_table(rows: list[dict], unit: str) -> str:
    lines = [f"| detector | ours {unit} (min–max) | torchvision {unit} (min–max) | ratio | per-round ratio (min–max) |",
             "|---|---|---|---|---|"]
    for r in rows:
        o, t, rr = r["ours"], r["torchvision"], r["round_ratio"]
        lines.append(f"| {r['arch']} | {o['median_img_s']:.3g} ({o['min_img_s']:.3g}–{o['max_img_s']:.3g}) | "
                     f"{t['median_img_s']:.3g} ({t['min_img_s']:.3g}–{t['max_img_s']:.3g}) | {r['ratio']:.2f} | "
                     f"{rr['median']:.2f} ({rr['min']:.2f}–{rr['max']:.2f}) |")
    return "\n".join(lines)
