"""Pictures of what a run sees and does, shared by tools/ and the trainer: samples with their boxes, predictions over
ground truth, and the training curves of a run's metrics.jsonl.

Boxes are drawn with PIL rather than torchvision's ``draw_bounding_boxes`` because that puts the class name inside
the box, where it hides small objects; here the tag sits above the box. Predictions are drawn in their class colour
(``PALETTE[k % 10]``) with a "name 0.87" tag above the box; ground truth as a thin white line on a black halo with a
small white-on-black tag *below* the box, so both can share one image and a wrong class or a missed object shows.

Instance masks are filled in their class colour at 40 % and outlined at full strength (``draw_masks``), under the
boxes. Not with torchvision's ``draw_segmentation_masks``: it paints the pixels where masks overlap black, and
instances overlap all the time (a rider on a horse, a mosaic's cut objects); here each fill is blended over the
previous ones, and the outlines go on last so that no fill hides another instance's edge.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as nnf
from PIL import ImageDraw, ImageFont
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image

from framework.data.transforms import Normalize
from framework.data.transforms.pipeline import iter_transforms
from framework.fileio import atomic_write

__all__ = ["PALETTE", "draw", "draw_detections", "draw_masks", "find_normalize", "plot_results", "to_uint8"]

PALETTE = [(255, 56, 56), (50, 205, 50), (0, 149, 255), (255, 178, 29), (207, 56, 255), (0, 230, 230),
           (255, 112, 180), (170, 255, 0), (255, 255, 255), (140, 100, 255)]  # colour of class k: PALETTE[k % 10]
GT_COLOUR, GT_HALO = (255, 255, 255), (0, 0, 0)  # ground truth: a 1 px white line on a 3 px black halo


def find_normalize(pipeline: Any) -> Optional[Normalize]:
    """The pipeline's Normalize step (searched through nested steps), to undo it before drawing."""
    steps = getattr(pipeline, "transforms", None) or []
    return next((t for t in iter_transforms(steps) if isinstance(t, Normalize)), None)


def to_uint8(image: torch.Tensor, norm: Optional[Normalize]) -> torch.Tensor:
    """Undo `norm` (if any) and return a uint8 CHW image."""
    image = image.as_subclass(torch.Tensor)
    if norm is not None:
        image = image * torch.tensor(norm.std).view(-1, 1, 1) + torch.tensor(norm.mean).view(-1, 1, 1)
    elif image.dtype == torch.uint8:
        return image
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def _tag(pen: ImageDraw.ImageDraw, font: Any, x0: float, y: float, text: str, fill: tuple, ink: tuple,
         below: bool, height: int) -> None:
    """A filled text tag with its top-left corner at (x0, y) (above: y is the box's top; below: its bottom)."""
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    th = bottom - top + 2
    if below:
        ty = y if y + th <= height else y - th  # under the box, or inside it at the image's bottom edge
    else:
        ty = y - th if y >= th else y  # above the box, or inside it at the image's top edge
    pen.rectangle((x0, ty, x0 + right - left + 2, ty + th), fill=fill)
    pen.text((x0 + 1 - left, ty + 1 - top), text, fill=ink, font=font)


def _draw_boxes(pen: ImageDraw.ImageDraw, font: Any, height: int, boxes: Sequence, labels: Sequence,
                classes: Sequence[str], scores: Optional[Sequence[float]], ground_truth: bool, tags: bool) -> None:
    for i, ((x0, y0, x1, y1), k) in enumerate(zip(boxes, labels)):
        name = classes[k] if 0 <= k < len(classes) else str(k)
        if ground_truth:
            pen.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=GT_HALO, width=3)
            pen.rectangle((x0, y0, x1, y1), outline=GT_COLOUR, width=1)
            if tags:
                _tag(pen, font, x0, y1 + 2, name, GT_HALO, GT_COLOUR, below=True, height=height)
        else:
            colour = PALETTE[k % len(PALETTE)]
            pen.rectangle((x0, y0, x1, y1), outline=colour, width=2)
            if tags:
                text = name if scores is None else f"{name} {scores[i]:.2f}"
                _tag(pen, font, x0, y0, text, colour, (0, 0, 0), below=False, height=height)


def _outline(mask: torch.Tensor) -> torch.Tensor:
    """The pixels of a bool (H, W) mask with a 4-neighbour outside it (the image's edge counts as outside)."""
    inner = mask.clone()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    inner[0] = inner[-1] = False
    inner[:, 0] = inner[:, -1] = False
    return mask & ~inner


def draw_masks(image: torch.Tensor, masks: torch.Tensor, labels: Sequence[int], alpha: float = 0.4) -> torch.Tensor:
    """Instance masks on a uint8 CHW image, returned as a new uint8 (3, H, W) image: each mask filled with its class
    colour (``PALETTE[label % 10]``, as its box) blended at `alpha`, then every outline drawn at full strength.

    `masks` is (N, h, w), bool or 0/1 of any dtype (a model's bool masks, a target's uint8 ``tv_tensors.Mask``), one
    per label. Masks of another size than the image (a prediction at the original size over a resized image) are
    scaled to it, nearest neighbour.
    """
    image = image.detach().cpu()
    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    masks = torch.as_tensor(masks).detach().cpu()
    labels = _list(labels)
    if masks.numel() == 0 or not labels:
        return image.clone()
    masks = masks.reshape(-1, *masks.shape[-2:])
    if len(masks) != len(labels):
        raise ValueError(f"draw_masks: {len(masks)} masks for {len(labels)} labels")
    height, width = image.shape[-2:]
    if masks.shape[-2:] != (height, width):
        masks = nnf.interpolate(masks[None].to(torch.uint8), size=(height, width), mode="nearest-exact")[0]
    out = image.to(torch.float32)
    colours = [torch.tensor(PALETTE[int(k) % len(PALETTE)], dtype=torch.float32)[:, None] for k in labels]
    for mask, colour in zip(masks, colours):  # fills, one over the other
        m = mask != 0
        out[:, m] = out[:, m] * (1 - alpha) + colour * alpha
    for mask, colour in zip(masks, colours):  # outlines on top of every fill
        out[:, _outline(mask != 0)] = colour
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _list(value: Any) -> list:
    return value.tolist() if hasattr(value, "tolist") else list(value)


def draw(image: torch.Tensor, target: Mapping[str, Any], classes: Sequence[str], *,
         scores: Optional[torch.Tensor] = None, ground_truth: bool = False, tags: bool = True,
         masks: bool = True) -> torch.Tensor:
    """`target`'s boxes (XYXY pixels), and its instance masks if it has `masks`, on a uint8 CHW image, returned as a
    new uint8 CHW image.

    By default each box is drawn in its class colour with the class name on a tag *above* it (inside, torchvision's
    place, the tag hides small objects). With `scores` the tags read "name 0.87" (predictions); with
    `ground_truth=True` boxes are drawn in the ground-truth style (thin white on black, tag below); `tags=False`
    draws no tags. Masks (``draw_masks``: class colour, translucent, outlined) go under the boxes; `masks=False`
    leaves them out.
    """
    if masks and target.get("masks") is not None:
        image = draw_masks(image, target["masks"], _list(target["labels"]))
    pil = to_pil_image(image.cpu().expand(3, -1, -1) if image.shape[0] == 1 else image.cpu())
    _draw_boxes(ImageDraw.Draw(pil), ImageFont.load_default(), pil.height, _list(target["boxes"]),
                _list(target["labels"]), classes, None if scores is None else _list(scores), ground_truth, tags)
    return pil_to_tensor(pil)


def draw_detections(image_uint8: torch.Tensor, prediction: Mapping[str, Any],
                    ground_truth: Optional[Mapping[str, Any]], classes: Sequence[str], score_thr: float = 0.3,
                    max_dets: int = 50) -> torch.Tensor:
    """Ground truth (thin white on black, tag below) and, over it, the `max_dets` highest-scoring predictions with
    score >= `score_thr` (class colour, "name 0.87" above; the best drawn last, on top). Returns uint8 CHW.

    A prediction with `masks` (N×H×W, a mask model's) has the masks of the drawn detections filled and outlined in
    their class colour (``draw_masks``) under all boxes; ground-truth masks are not drawn, so the two do not blend."""
    scores = torch.as_tensor(prediction["scores"]).detach().cpu().float().reshape(-1)
    order = scores.argsort(descending=True)
    order = order[scores[order] >= score_thr][:max_dets].flip(0)
    boxes = torch.as_tensor(prediction["boxes"]).detach().cpu().reshape(-1, 4)[order]
    labels = torch.as_tensor(prediction["labels"]).detach().cpu().reshape(-1)[order]
    image = image_uint8.cpu()
    if isinstance(prediction.get("masks"), torch.Tensor) and len(order):
        image = draw_masks(image, torch.as_tensor(prediction["masks"]).detach().cpu()[order], labels.tolist())
    pil = to_pil_image(image.expand(3, -1, -1) if image.shape[0] == 1 else image)
    pen, font = ImageDraw.Draw(pil), ImageFont.load_default()
    if ground_truth is not None:
        _draw_boxes(pen, font, pil.height, _list(ground_truth["boxes"]), _list(ground_truth["labels"]), classes,
                    None, ground_truth=True, tags=True)
    _draw_boxes(pen, font, pil.height, boxes.tolist(), labels.tolist(), classes, scores[order].tolist(),
                ground_truth=False, tags=True)
    return pil_to_tensor(pil)


# ------------------------------------------------------------------------------------------------ training curves
def _read_series(path: Path) -> tuple[dict[str, dict[float, float]], dict[str, dict[float, float]]]:
    """(train series by iteration, val series by epoch) of a metrics.jsonl: {name: {x: value}}.

    A later record at the same x replaces an earlier one (a resumed run repeats the iterations after its last
    checkpoint); lines that are not JSON (one cut short by a crash) are skipped; null/NaN values and COCO's -1
    ("no objects of that size") are gaps.
    """
    train: dict[str, dict[float, float]] = {}
    val: dict[str, dict[float, float]] = {}
    with path.open() as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            mode = record.get("mode")
            if mode == "train" and isinstance(record.get("iter"), (int, float)):
                x, names = record["iter"], [k for k in record if k.startswith("loss") or k == "lr"]
                series = train
            elif mode == "val" and isinstance(record.get("epoch"), (int, float)):
                x, names = record["epoch"], [k for k in record if k not in ("mode", "epoch", "iter")]
                series = val
            else:
                continue
            for name in names:
                v = record[name]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                series.setdefault(name, {})[x] = v if math.isfinite(v) and not (series is val and v == -1) else math.nan
    return train, val


def _smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard's smoothing: a debiased exponential moving average, so the first points are not pulled to 0."""
    out, avg, norm = [], 0.0, 0.0
    for v in values:
        if math.isfinite(v):
            avg, norm = weight * avg + (1 - weight) * v, weight * norm + (1 - weight)
        out.append(avg / norm if norm else math.nan)
    return out


def plot_results(metrics_jsonl: str | os.PathLike[str], out_png: str | os.PathLike[str]) -> Path:
    """One figure of a run: a panel per loss term (raw values faint, smoothed line; x = iteration), the learning rate
    and each validation metric that has a value (x = epoch). Written atomically (a crash leaves the old PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    src, out = Path(metrics_jsonl), Path(out_png)
    train, val = _read_series(src)
    val = {k: v for k, v in val.items() if any(math.isfinite(y) for y in v.values())}
    losses = sorted((k for k in train if k != "lr"), key=lambda k: (k == "loss", k))  # the total last
    panels = [(k, train[k], "iteration", True) for k in losses]
    panels += [("lr", train["lr"], "iteration", False)] if "lr" in train else []
    panels += [(f"val/{k}", v, "epoch", False) for k, v in val.items()]
    if not panels:
        raise ValueError(f"{src} has no train losses, learning rate or validation metrics to plot.")

    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4 * cols, 3 * rows), tight_layout=True)
    FigureCanvasAgg(fig)
    for i, (title, series, xlabel, smooth) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        xs = sorted(series)
        ys = [series[x] for x in xs]
        if smooth:
            ax.plot(xs, ys, color="tab:blue", alpha=0.3, linewidth=1, label="raw")
            ax.plot(xs, _smooth(ys), color="tab:blue", linewidth=2, label="smoothed")
        else:
            ax.plot(xs, ys, color="tab:orange", marker="." if len(xs) < 50 else None, linewidth=2)
        if title == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    with atomic_write(out) as f:
        fig.savefig(f, format="png", dpi=100)
    return out
