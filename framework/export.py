"""Ship a trained detector as ONNX, and check that onnxruntime finds the detections PyTorch finds.

The exported graph starts after pre-processing (decode, resize, normalize and padding stay with the caller, as in
`Predictor.preprocess` + `collate`) and takes two inputs:

- `images` `[B, 3, H, W]` float32: the normalized batch, padded bottom/right (H, W multiples of 32 for a dynamic
  export);
- `image_sizes` `[B, 2]` int64: each image's (h, w) before padding. Boxes are clipped to it, exactly as the
  PyTorch model clips them to `image_sizes`; a batch of one unpadded image passes its own H, W.

With `nms=True` (the default) decoding, score threshold, top-k, class-aware NMS and `max_per_img` run inside the
graph and the outputs have a fixed shape, padded to K = the head's `max_per_img` (what TensorRT's EfficientNMS and
most serving stacks expect): `boxes [B, K, 4]` (XYXY, pixels of the resized input image), `scores [B, K]`, `labels
[B, K]` (int64, -1 in padding) and `num_detections [B]`; rows are sorted by score, rows past `num_detections` are
zero. With `nms=False` the graph stops before the candidate selection: `boxes [B, N, 4]` (every prior decoded and
clipped) and `scores [B, N, C]` (per-class probabilities), for a user's own NMS.

A mask head with prototype masks (YOLO-seg: `ExportableHead.dense_mask_predictions`) adds two outputs:
`mask_coefficients` (`[B, K, M]` per detection, zero in padding; `[B, N, M]` per prior without NMS) and
`prototypes` `[B, M, H / s, W / s]` (s = 4 for YOLO-seg). A detection's mask is sigmoid(coefficients ·
prototypes), upsampled s× to the padded input, the padding cut off, resized to the original image, cropped to its
box and thresholded at 0.5: the head's `paste_masks` does that (in one bilinear step; the check uses it), and it is
a few lines in any runtime. Pasting masks is left out of the graph: its output size would be per detection and
per original image.

Exporter: `torch.onnx.export(dynamo=True)` (torch.export + onnxscript). The legacy TorchScript exporter is
deprecated in this torch and traces image sizes as tensors, so the prior grids and the per-level top-k (sizes that
follow the input) would need a second, tensor-valued implementation; torch.export keeps sizes symbolic integers,
and the heads' own forward and prior generators run unchanged. NMS is `torchvision.ops.nms`, which onnxscript's
torchlib translates to ONNX NonMaxSuppression; the data-dependent counts (candidates above the threshold, boxes
kept) stay tensors inside the graph, never Python branches. `select_detections` re-states `topk_per_level` +
`Postprocessor` in that form and is checked against the model's `predict` bit for bit (tests/test_export.py).
Dynamic exports trace a batch of 2 at a size where every pyramid level has at least 2×2 cells: torch.export
specializes a dimension it sees as 1.
"""
from __future__ import annotations

import json
import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torchvision
from torch import Tensor, nn

from framework.data.loader import collate
from framework.fileio import atomic_write
from framework.models.ops.postprocess import Postprocessor
from framework.protocols import ExportableHead

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx",)
SIZE_DIVISOR = 32  # `collate` pads to it; a dynamic export declares H and W as multiples of it
INSTALL_HINT = 'pip install -e ".[export]"'


class ExportError(ValueError):
    """The model (or an export setting) cannot be exported; the message says what to change."""


class ExportDependencyError(ImportError):
    """onnx / onnxscript / onnxruntime is missing."""


def _exportable_head(model: nn.Module) -> ExportableHead:
    """The model's head if it can be exported: one with `dense_predictions` and a `postprocess`
    (`framework.protocols.ExportableHead`: every prior decoded, before the candidate selection that
    `select_detections` re-states). Two-stage heads (Faster R-CNN) have no `dense_predictions`: their second stage
    runs on a data-dependent set of proposals per image."""
    head = getattr(model, "head", None)
    missing = [name for name in ("dense_predictions", "postprocess") if not hasattr(head, name)]
    if not missing and isinstance(head, ExportableHead):
        return head
    from framework.models import heads

    supported = ", ".join(name for name in heads.__all__ if hasattr(getattr(heads, name), "dense_predictions"))
    lacks = ", ".join(missing) or "the members of framework.protocols.ExportableHead"
    raise ExportError(f"ONNX export supports the one-stage heads, which have dense_predictions(features) "
                      f"({supported}); this model's head is {type(head).__name__}, which has no {lacks}.")


def clip_to_images(boxes: Tensor, image_sizes: Tensor) -> Tensor:
    """Clip `[B, N, 4]` boxes to each image's (h, w) `[B, 2]`, as `clip_boxes` does in PyTorch."""
    upper = image_sizes.flip(-1).to(boxes.dtype).repeat(1, 2)[:, None, :]
    return torch.minimum(boxes.clamp(min=0), upper)


def select_detections(boxes: Tensor, scores: Tensor, level_sizes: Sequence[Any], post: Postprocessor,
                      with_priors: bool = False) -> tuple[Tensor, ...]:
    """`Postprocessor` with fixed-shape outputs: per level top-`nms_pre`, score threshold, class-aware NMS over the
    whole batch (group = image × class), then the best `max_per_img` of each image, padded. `with_priors` adds a
    fifth output, the prior index `[B, K]` of each detection (0 in padding), to gather other per-prior outputs.

    The same steps as `topk_per_level` + `Postprocessor`, written without Python decisions on tensor values: the
    per-level k is `sym_min(nms_pre, n)` (symbolic when the size is), candidates below the threshold are dropped
    with `nonzero` (a data-dependent size inside the graph), NMS uses torchvision's coordinate-offset trick with the
    same offset as `batched_nms` (the largest coordinate among the candidates), and per-image truncation is a top-k
    over the kept scores instead of a loop over images."""
    batch, _, num_classes = scores.shape
    k_out = post.max_per_img
    cand_scores, cand_idx, start = [], [], 0
    for n in level_sizes:
        flat = scores[:, start:start + n].reshape(batch, -1)
        s, i = flat.topk(torch.sym_min(post.nms_pre, n * num_classes), dim=1)
        cand_scores.append(s)
        cand_idx.append(i + start * num_classes)
        start = start + n
    s, idx = torch.cat(cand_scores, 1), torch.cat(cand_idx, 1)  # [B, M]
    labels = idx % num_classes
    cand_boxes = boxes.gather(1, (idx // num_classes)[..., None].expand(-1, -1, 4))
    valid = s > post.score_thr
    if post.min_size > 0:
        wh = cand_boxes[..., 2:] - cand_boxes[..., :2]
        valid = valid & (wh >= post.min_size).all(-1)

    image_idx = torch.arange(batch, device=s.device)[:, None].expand_as(labels)
    groups = (image_idx if post.class_agnostic else image_idx * num_classes + labels).reshape(-1)
    max_coordinate = torch.where(valid[..., None], cand_boxes, torch.zeros_like(cand_boxes)).max()
    shifted = cand_boxes.reshape(-1, 4) + (groups.to(cand_boxes.dtype) * (max_coordinate + 1))[:, None]
    flat_scores = s.reshape(-1)
    candidates = valid.reshape(-1).nonzero().squeeze(1)
    kept = candidates[torchvision.ops.nms(shifted[candidates], flat_scores[candidates], post.nms_iou_thr)]

    # kept scores in place, -1 elsewhere; K more -1 columns so the top-K exists even with fewer than K candidates
    kept_scores = torch.full_like(flat_scores, -1.0).scatter(0, kept, flat_scores[kept]).reshape(batch, -1)
    pad = kept_scores.new_full((batch, k_out), -1.0)
    ranked, order = torch.cat([kept_scores, pad], 1).topk(k_out, dim=1)
    is_det = ranked > -0.5
    out_boxes = torch.cat([cand_boxes, cand_boxes.new_zeros(batch, k_out, 4)], 1).gather(
        1, order[..., None].expand(-1, -1, 4))
    out_labels = torch.cat([labels, labels.new_zeros(batch, k_out)], 1).gather(1, order)
    out = (torch.where(is_det[..., None], out_boxes, torch.zeros_like(out_boxes)),
           torch.where(is_det, ranked, torch.zeros_like(ranked)),
           torch.where(is_det, out_labels, torch.full_like(out_labels, -1)),
           is_det.sum(1))
    if not with_priors:
        return out
    priors = torch.cat([idx // num_classes, idx.new_zeros(batch, k_out)], 1).gather(1, order)
    return (*out, torch.where(is_det, priors, torch.zeros_like(priors)))


class ExportWrapper(nn.Module):
    """The graph that gets exported: `(images, image_sizes)` → fixed-shape detections (`nms=True`) or dense
    decoded boxes and scores (`nms=False`), plus mask coefficients and prototypes for a head that has
    `dense_mask_predictions`; see the module docstring for shapes. Runs eagerly too, which is how its
    post-processing is checked against the model's own `predict`."""

    def __init__(self, model: nn.Module, nms: bool = True) -> None:
        super().__init__()
        self.model, self.nms = model, nms
        head = _exportable_head(model)
        self.masks = callable(getattr(head, "dense_mask_predictions", None))
        post = head.postprocess
        if nms and post.nms_type != "nms":
            raise ExportError(f"model.head.nms_type={post.nms_type} has no ONNX operator (only plain NMS has: ONNX "
                              "NonMaxSuppression). Export with nms=false and run it yourself, or override "
                              "model.head.nms_type=nms.")

    @property
    def output_names(self) -> list[str]:
        names = ["boxes", "scores", "labels", "num_detections"] if self.nms else ["boxes", "scores"]
        return names + ["mask_coefficients", "prototypes"] if self.masks else names

    def forward(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, ...]:
        if self.masks:
            return self._with_masks(images, image_sizes)
        boxes, scores, level_sizes = self.model.head.dense_predictions(self.model.extract_features(images))
        boxes = clip_to_images(boxes, image_sizes)
        if not self.nms:
            return boxes, scores.float()
        return select_detections(boxes, scores.float(), level_sizes, self.model.head.postprocess)

    def _with_masks(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, ...]:
        """The detections (or dense outputs) of `forward`, then each one's mask coefficients and the prototypes."""
        boxes, scores, level_sizes, coefs, protos = self.model.head.dense_mask_predictions(
            self.model.extract_features(images))
        boxes, coefs, protos = clip_to_images(boxes, image_sizes), coefs.float(), protos.float()
        if not self.nms:
            return boxes, scores.float(), coefs, protos
        *dets, priors = select_detections(boxes, scores.float(), level_sizes, self.model.head.postprocess,
                                          with_priors=True)
        kept = coefs.gather(1, priors[..., None].expand(-1, -1, coefs.shape[-1]))
        is_det = dets[2] >= 0
        return (*dets, torch.where(is_det[..., None], kept, torch.zeros_like(kept)), protos)


# --- export --------------------------------------------------------------------------------------------------

def _require(*modules: str) -> None:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ExportDependencyError(
                f"{name} is not installed; ONNX export and its check need onnx, onnxscript and onnxruntime: "
                f"{INSTALL_HINT}") from exc


def _dynamic_shapes(batch_max: int = 1024, side_max: int = 16384) -> dict[str, dict[int, Any]]:
    Dim = torch.export.Dim
    batch = Dim("batch", min=1, max=batch_max)
    h = Dim("height", min=1, max=side_max // SIZE_DIVISOR) * SIZE_DIVISOR
    w = Dim("width", min=1, max=side_max // SIZE_DIVISOR) * SIZE_DIVISOR
    return {"images": {0: batch, 2: h, 3: w}, "image_sizes": {0: batch}}


@contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """The ONNX optimizer logs every rewrite at INFO, which the tools' logging (root at INFO) would print."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@torch.no_grad()
def _tracing_size(model: nn.Module, h: int, w: int) -> tuple[int, int]:
    """`(h, w)`, doubled until every pyramid level is at least 2×2: torch.export specializes a dimension whose
    example size is 1 (and restricts the input size to the range where it stays 1), so a dynamic export must not
    see one. A 128-px input has a 1×1 P7 in the RetinaNet and FCOS configs; 256 px gives 2×2."""
    device = next(model.parameters()).device
    for _ in range(8):
        feats = model.extract_features(torch.zeros(1, 3, h, w, device=device))
        if min(min(f.shape[-2:]) for f in feats) >= 2:
            break
        h, w = h * 2, w * 2
    return h, w


def _to_onnx(wrapper: ExportWrapper, input_size: tuple[int, int], dynamic: bool, opset: int) -> Any:
    h, w = _tracing_size(wrapper.model, *input_size) if dynamic else input_size
    # a dynamic export traces a batch of 2, for the same reason
    batch = 2 if dynamic else 1
    device = next(wrapper.parameters()).device
    images = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    sizes = torch.tensor([[h, w]] * batch, dtype=torch.int64, device=device)
    with warnings.catch_warnings(), _quiet_loggers("onnxscript", "onnx_ir", "torch.onnx", "torch.export"):
        warnings.simplefilter("ignore")  # torch.export's and torchvision's deprecation chatter
        return torch.onnx.export(
            wrapper, (images, sizes), None, dynamo=True, opset_version=opset, verbose=False,
            input_names=["images", "image_sizes"], output_names=wrapper.output_names,
            dynamic_shapes=_dynamic_shapes() if dynamic else None)


def export_onnx(detector_or_model: Any, path: str | Path, input_size: Sequence[int] = (640, 640), nms: bool = True,
                dynamic: bool = True, opset: int = 18, metadata: dict[str, str] | None = None) -> Path:
    """Export to `path` (written atomically: a temporary file in the same folder, then a rename) and return it.

    `detector_or_model` is a `framework.inference.Predictor` (its class names go into the file's metadata) or a
    `framework.models.Detector`. `input_size` (h, w) is the tracing input, and the fixed size of a static export.
    `dynamic=True` makes batch, height and width free (height and width multiples of 32); a model that cannot be
    exported so is exported with the fixed `input_size` and batch 1 instead, with a warning saying why."""
    _require("onnx", "onnxscript")
    model = getattr(detector_or_model, "model", detector_or_model)
    if len(input_size) != 2 or min(int(v) for v in input_size) < 1:
        raise ExportError(f"input_size must be [height, width], got {list(input_size)}")
    h, w = (int(v) for v in input_size)
    if dynamic and (h % SIZE_DIVISOR or w % SIZE_DIVISOR):
        rounded = [math.ceil(v / SIZE_DIVISOR) * SIZE_DIVISOR for v in (h, w)]
        raise ExportError(f"input_size={[h, w]}: a dynamic export traces with a padded batch, so height and width "
                          f"must be multiples of {SIZE_DIVISOR} (e.g. input_size={rounded}), or use dynamic=false.")
    was_training = model.training
    model.eval()
    wrapper = ExportWrapper(model, nms).eval()
    try:
        try:
            program = _to_onnx(wrapper, (h, w), dynamic, opset)
        except Exception as exc:  # noqa: BLE001 - any tracing failure: fall back to what the model allows
            if not dynamic:
                raise
            reason = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            log.warning("This model does not export with a dynamic batch and image size (%s); exporting with a "
                        "fixed input of 1x3x%dx%d instead.", reason[:300], h, w)
            dynamic = False
            program = _to_onnx(wrapper, (h, w), False, opset)
    finally:
        model.train(was_training)

    proto = program.model_proto
    if not nms and dynamic:  # the prior count is a long expression of height and width; give it a name
        for output in proto.graph.output:
            if output.name in ("boxes", "scores", "mask_coefficients"):
                output.type.tensor_type.shape.dim[1].dim_param = "num_priors"
    if dynamic and wrapper.masks:  # and the prototypes' size, a fraction of the input's
        dims = next(o for o in proto.graph.output if o.name == "prototypes").type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "prototype_height", "prototype_width"
    classes = getattr(detector_or_model, "classes", None)
    props = {"framework.outputs": ",".join(wrapper.output_names), "framework.nms": str(nms).lower(),
             "framework.dynamic": str(dynamic).lower(), "framework.input_size": json.dumps([h, w]),
             "framework.num_classes": str(model.num_classes),
             "framework.score_thr": str(model.head.postprocess.score_thr),
             "framework.max_detections": str(model.head.postprocess.max_per_img)}
    if classes:
        props["framework.classes"] = json.dumps(list(classes))
    props.update(metadata or {})
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path = Path(path)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return path


def describe_onnx(path: str | Path) -> str:
    """The graph's inputs and outputs with their shapes, e.g. `images [batch, 3, height, width] float32`."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def fmt(value: Any) -> str:
        t = value.type.tensor_type
        dims = ", ".join(d.dim_param or str(d.dim_value) for d in t.shape.dim)
        return f"{value.name} [{dims}] {onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)}"

    return (f"inputs: {'; '.join(fmt(v) for v in model.graph.input)}\n"
            f"outputs: {'; '.join(fmt(v) for v in model.graph.output)}")


# --- verification --------------------------------------------------------------------------------------------

@dataclass
class VerifyReport:
    """onnxruntime vs PyTorch on the same inputs. `outputs` is "detections" (nms=True: matched detections) or
    "dense" (nms=False: every prior's box and class scores). For a mask head, the masks rebuilt from the ONNX
    outputs (the head's `paste_masks`) against PyTorch's (`mask_mismatch`: pixels where they differ over pixels in
    either, pooled over the matched detections), and without NMS the coefficients and prototypes themselves."""

    outputs: str
    images: int
    compared: int = 0  # detections matched (or dense priors compared)
    max_box_diff: float = 0.0  # pixels
    max_score_diff: float = 0.0
    problems: list[str] = field(default_factory=list)  # count or label mismatches, unmatched detections
    onnx_ms: float = 0.0  # per image
    torch_ms: float = 0.0
    atol: float = 1e-3
    score_atol: float = 1e-4
    rtol: float = 1e-4  # box tolerance grows with the coordinate: float32 rounding in a deep net is relative
    box_excess: float = 0.0  # the largest |difference| / (atol + rtol * |coordinate|); within tolerance when <= 1
    masks_compared: int = 0  # masks rebuilt from the ONNX outputs and compared (nms=True, mask heads)
    mask_mismatch: float = 0.0  # differing pixels / pixels in either mask, over all of them
    mask_tol: float = 0.01  # pixels right at the threshold may flip with float rounding
    max_mask_output_diff: float = 0.0  # nms=False: mask coefficients and prototypes
    mask_atol: float = 1e-3
    _mask_diff: int = field(default=0, repr=False)
    _mask_union: int = field(default=0, repr=False)

    @property
    def ok(self) -> bool:
        return (not self.problems and self.box_excess <= 1.0 and self.max_score_diff <= self.score_atol
                and self.mask_mismatch <= self.mask_tol and self.max_mask_output_diff <= self.mask_atol)

    def add_boxes(self, got: Tensor, ref: Tensor) -> None:
        diff = (got - ref).abs()
        self.max_box_diff = max(self.max_box_diff, float(diff.max()))
        self.box_excess = max(self.box_excess, float((diff / (self.atol + self.rtol * ref.abs())).max()))

    def summary(self) -> str:
        what = "detections" if self.outputs == "detections" else "priors (boxes and class scores)"
        lines = [f"ONNX check {'passed' if self.ok else 'FAILED'} on {self.images} image(s): {self.compared} {what} "
                 f"compared; max box difference {self.max_box_diff:.2e} px (tolerance {self.atol:g} px + "
                 f"{self.rtol:g} x coordinate), max score "
                 f"difference {self.max_score_diff:.2e} (tolerance {self.score_atol:g})",
                 f"latency per image: onnxruntime {self.onnx_ms:.1f} ms, PyTorch {self.torch_ms:.1f} ms (CPU)"]
        if self.masks_compared:
            lines.insert(1, f"masks: {self.masks_compared} rebuilt from the ONNX outputs, {self.mask_mismatch:.2e} of "
                            f"their pixels differ from PyTorch's (tolerance {self.mask_tol:g})")
        elif self.max_mask_output_diff:
            lines.insert(1, f"mask coefficients and prototypes: max difference {self.max_mask_output_diff:.2e} "
                            f"(tolerance {self.mask_atol:g})")
        lines += [f"  {p}" for p in self.problems[:10]]
        if len(self.problems) > 10:
            lines.append(f"  … and {len(self.problems) - 10} more")
        return "\n".join(lines)


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ExportDependencyError(f"onnxruntime is not installed; it runs the exported model for the check: "
                                    f"{INSTALL_HINT} (or verify=false to skip the check).") from exc
    return onnxruntime


def match_detections(a: dict[str, Tensor], b: dict[str, Tensor]) -> list[tuple[int, int]]:
    """Pairs (i in a, j in b) of detections with the same label, both lists sorted by score.

    In order when that pairs every detection with one of its own label at about the same place; otherwise (near-
    equal scores ranked differently by the two runtimes) greedily by the smallest box distance (L∞) plus score
    difference, so a reordering is not reported as a mismatch but a missing or moved detection is."""
    n = min(len(a["scores"]), len(b["scores"]))
    if len(a["scores"]) == len(b["scores"]) and bool((a["labels"] == b["labels"]).all()) and (
            n == 0 or float((a["boxes"] - b["boxes"]).abs().max()) < 1.0):
        return [(i, i) for i in range(n)]
    cost = (a["boxes"][:, None] - b["boxes"][None]).abs().amax(-1) + (a["scores"][:, None] - b["scores"][None]).abs()
    cost[a["labels"][:, None] != b["labels"][None]] = math.inf
    pairs, used_a, used_b = [], set(), set()
    for flat in cost.flatten().argsort().tolist():
        i, j = divmod(flat, cost.shape[1])
        if not math.isfinite(float(cost[i, j])):
            break
        if i not in used_a and j not in used_b:
            pairs.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return pairs


def _pad_batch(images: Sequence[Tensor], fixed: tuple[int, int] | None = None
               ) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
    """A padded batch as `collate` makes it, or padded to exactly `fixed` (h, w) for a static graph."""
    batch = collate([(im, {}) for im in images], size_divisor=SIZE_DIVISOR)
    padded = batch.images
    if fixed is not None:
        padded = padded.new_zeros(len(images), padded.shape[1], *fixed)
        for i, im in enumerate(images):
            padded[i, :, :im.shape[-2], :im.shape[-1]] = im
    return padded, torch.tensor(batch.image_sizes, dtype=torch.int64), batch.image_sizes


def _fit(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Shrink a preprocessed image (keeping its aspect ratio) so it fits a static graph's input size."""
    h, w = image.shape[-2:]
    scale = min(size[0] / h, size[1] / w)
    if scale >= 1:
        return image
    new = (min(size[0], round(h * scale)), min(size[1], round(w * scale)))
    return torch.nn.functional.interpolate(image[None], size=new, mode="bilinear", align_corners=False)[0]


@torch.no_grad()
def verify_onnx(path: str | Path, model: nn.Module, images: Sequence[Tensor], atol: float = 1e-3,
                score_atol: float = 1e-4, batch_size: int = 1, rtol: float = 1e-4) -> VerifyReport:
    """Run the ONNX file (onnxruntime, CPU) and `model` (PyTorch, eval, on its own device) on the same padded batches
    of `images` (preprocessed float CHW tensors, e.g. `Predictor.preprocess(image)[0]`) and compare.

    nms=True files: per image the same number of detections, each matched (`match_detections`) to one of the same
    label with boxes within `atol` + `rtol` x |coordinate| px and scores within `score_atol`; the reference is the
    model's own forward
    (`model(images, image_sizes=…)`). nms=False files: every prior's box and scores against the eager
    `ExportWrapper`. A static graph (dynamic=False) gets batches of its fixed size, each image shrunk to fit its
    input size if larger, then padded to it. Latency is per image, each batch timed on its second run (both
    runtimes prepare kernels per input shape on the first)."""
    ort = _onnxruntime()
    if not images:
        raise ValueError("verify_onnx needs at least one image")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    fixed_batch, _, *hw = session.get_inputs()[0].shape
    fixed = tuple(hw) if all(isinstance(v, int) for v in hw) else None
    if fixed is not None:  # a static graph: images shrunk to fit, padded to its size
        images = [_fit(im, fixed) for im in images]
    if isinstance(fixed_batch, int):
        batch_size = fixed_batch
    dense = "num_detections" not in names
    paste = getattr(_exportable_head(model), "paste_masks", None) if "prototypes" in names else None
    if "prototypes" in names and not dense and paste is None:
        raise ExportError("the ONNX file has prototype outputs but the model's head has no paste_masks to rebuild "
                          "masks from them; verify it against the model it was exported from")
    model = model.eval()
    device = next(model.parameters()).device
    reference = ExportWrapper(model, nms=False) if dense else None
    report = VerifyReport("dense" if dense else "detections", len(images), atol=atol, score_atol=score_atol,
                          rtol=rtol)
    chunks = [list(images[i:i + batch_size]) for i in range(0, len(images), max(1, batch_size))]

    def run_onnx(batch: Tensor, sizes: Tensor) -> dict[str, Tensor]:
        out = session.run(None, {"images": batch.numpy(), "image_sizes": sizes.numpy()})
        return {k: torch.from_numpy(v) for k, v in zip(names, out)}

    def run_torch(batch: Tensor, sizes: Tensor, size_list: list[tuple[int, int]]) -> Any:
        batch = batch.to(device)
        if dense:
            return [t.cpu() for t in reference(batch, sizes.to(device))]
        return [{k: v.cpu() for k, v in det.items()} for det in model(batch, image_sizes=size_list)]

    done = 0
    for chunk in chunks:
        batch, sizes, size_list = _pad_batch(chunk, fixed)
        run_onnx(batch, sizes), run_torch(batch, sizes, size_list)  # warm-up: both runtimes prepare per shape
        t0 = time.perf_counter()
        got = run_onnx(batch, sizes)
        t1 = time.perf_counter()
        ref = run_torch(batch, sizes, size_list)
        t2 = time.perf_counter()
        report.onnx_ms += (t1 - t0) * 1000
        report.torch_ms += (t2 - t1) * 1000
        if dense:
            _compare_dense(report, got, ref)
        else:
            _compare_detections(report, got, ref, first_image=done, paste=paste, image_sizes=size_list)
        done += len(chunk)
    report.onnx_ms /= len(images)
    report.torch_ms /= len(images)
    return report


def _compare_dense(report: VerifyReport, got: dict[str, Tensor], ref: Sequence[Tensor]) -> None:
    if got["boxes"].shape != ref[0].shape or got["scores"].shape != ref[1].shape:
        report.problems.append(f"output shapes differ: onnxruntime {tuple(got['boxes'].shape)}, "
                               f"{tuple(got['scores'].shape)}; PyTorch {tuple(ref[0].shape)}, {tuple(ref[1].shape)}")
        return
    report.compared += int(ref[0].shape[0] * ref[0].shape[1])
    report.add_boxes(got["boxes"], ref[0])
    report.max_score_diff = max(report.max_score_diff, float((got["scores"] - ref[1]).abs().max()))
    for name, r in zip(("mask_coefficients", "prototypes"), ref[2:]):
        if got[name].shape != r.shape:
            report.problems.append(f"{name} shapes differ: onnxruntime {tuple(got[name].shape)}, PyTorch "
                                   f"{tuple(r.shape)}")
        elif r.numel():
            report.max_mask_output_diff = max(report.max_mask_output_diff, float((got[name] - r).abs().max()))


def _compare_detections(report: VerifyReport, got: dict[str, Tensor], ref: Sequence[dict[str, Tensor]],
                        first_image: int, paste: Any = None, image_sizes: Sequence[tuple[int, int]] = ()) -> None:
    for i, r in enumerate(ref):
        n = int(got["num_detections"][i])
        g = {"boxes": got["boxes"][i, :n], "scores": got["scores"][i, :n], "labels": got["labels"][i, :n]}
        order = r["scores"].argsort(descending=True, stable=True)
        r = {k: r[k][order].float() if k in ("boxes", "scores") else r[k][order]
             for k in ("boxes", "scores", "labels", "masks") if k in r}
        name = f"image {first_image + i}"
        if n != len(r["scores"]):
            report.problems.append(f"{name}: onnxruntime finds {n} detections, PyTorch {len(r['scores'])}")
        pairs = match_detections(g, r)
        unmatched = max(n, len(r["scores"])) - len(pairs)
        if unmatched:
            report.problems.append(f"{name}: {unmatched} detection(s) without a same-label counterpart")
        if not pairs:
            continue
        gi, ri = (torch.tensor(ix) for ix in zip(*pairs))
        report.compared += len(pairs)
        report.add_boxes(g["boxes"][gi], r["boxes"][ri])
        report.max_score_diff = max(report.max_score_diff, float((g["scores"][gi] - r["scores"][ri]).abs().max()))
        if paste is not None:
            size = image_sizes[i]
            rebuilt = paste(got["mask_coefficients"][i, gi], got["prototypes"][i], g["boxes"][gi], size, size)
            _add_masks(report, rebuilt.cpu(), r["masks"][ri].bool())


def _add_masks(report: VerifyReport, got: Tensor, ref: Tensor) -> None:
    """Pool the differing and the covered pixels of this batch's matched masks into `mask_mismatch`."""
    if got.shape != ref.shape:
        report.problems.append(f"rebuilt masks {tuple(got.shape)} and PyTorch's {tuple(ref.shape)} differ in shape")
        return
    diff, union = int((got ^ ref).sum()), int((got | ref).sum())
    report._mask_diff, report._mask_union = report._mask_diff + diff, report._mask_union + union
    report.masks_compared += len(got)
    report.mask_mismatch = report._mask_diff / max(report._mask_union, 1)


__all__ = ["EXPORT_FORMATS", "ExportDependencyError", "ExportError", "ExportWrapper", "VerifyReport", "describe_onnx",
           "export_onnx",
           "match_detections", "select_detections", "verify_onnx"]
