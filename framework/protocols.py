"""The extension points, as `typing.Protocol`s: what a dataset, an evaluator, a head or a backbone of your own must
provide for the framework to use it. Nothing needs to inherit from these classes; a component only has to have the
members below (structural typing). Point a config's `_target_` at it and extend the allow-list with
`allow_targets=[mypackage.]` (framework/config/instantiation.py).

Those marked `runtime_checkable` can be checked with `isinstance(obj, Protocol)`, which only looks for the members'
names (not their signatures or return types): a quick sanity check, not a proof. The docstrings say what each
member must return; tests/test_plugins.py trains, evaluates and exports a head and a dataset defined outside
framework/ against exactly these contracts.

The contracts between the parts are the design's (DESIGN.md, "Contracts between the parts"):

- a sample is `(image, target)`: `image` a `tv_tensors.Image` (uint8, CHW, RGB), `target` a dict with `boxes`
  (`tv_tensors.BoundingBoxes`, XYXY, absolute pixels, `canvas_size=(h, w)`), `labels` (int64, contiguous
  `0..K-1`), `image_id` (int, the id the ground truth uses), `orig_size` (`(h, w)` of the decoded image), and
  optionally `iscrowd` / `difficult`;
- detections are, per image, a dict with `boxes` `[N, 4]` (XYXY, original-image pixels), `scores` `[N]` and
  `labels` `[N]` (int64, contiguous).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from torch import Tensor

__all__ = ["Backbone", "DetectionDataset", "Evaluator", "ExportableHead", "Head", "Neck"]


@runtime_checkable
class DetectionDataset(Protocol):
    """A detection dataset: samples for training and validation, plus the class list and the ground truth the
    evaluators read. The built-in ones (COCO, VOC, Cityscapes, YOLO, shapes) derive from
    `framework.data.datasets.base.DetectionDatasetBase`, which provides all of this from a few flat arrays; a
    dataset of one's own may use it or meet this protocol without it (tests/test_plugins.py does).

    The evaluators (framework/evaluation/build.py) read the ground truth from one place, a pycocotools `COCO`
    index (`coco`), together with the mapping between the contiguous labels and its category ids; the trainer
    checks `num_classes` against the model and the training split's `classes` against the validation split's.
    A dataset that is not COCO-shaped on disk builds that index in memory with
    `framework.data.datasets.base.coco_index(dict)` from a COCO-format dict (`images` with `id`, `width`,
    `height`; `annotations` with XYWH `bbox`, `area`, `iscrowd`, `category_id`; `categories`), and its samples with
    `framework.data.datasets.base.detection_sample(image, boxes, labels, image_id, transforms)`.

    Optional members the framework uses when present (not part of the runtime check):

    - `transforms`: a callable `(image, target) -> (image, target)` applied by `__getitem__`. The val dataset is
      built with the validation pipeline as its `transforms=` argument (so its constructor must take one); the
      training split is built without and wrapped in a `PipelineDataset`. The visualization callback sets the attribute to None
      for a moment to read raw images (visualization);
    - `image_path(i) -> Path`: the image file of sample `i`, for the check of every image file before training
      (`dataset.scan_images=true`, the default; a dataset without it, e.g. one whose images are no files, is
      not scanned);
    - `get_image_info(i) -> {"id", "file_name", "height", "width"}`: the size of sample `i` without decoding it,
      for aspect-ratio grouping (without it, batches are not grouped);
    - `ids`: the image ids in sample order (`ground_truth` follows it when they are ints, else the index's
      sorted ids);
    - `classes_source`: a string saying where the class names were read from (for error messages).
    """

    classes: list[str]
    """The class names; `classes[label]` names the contiguous label `label`."""

    num_classes: int
    """`len(classes)`."""

    label_to_cat_id: Sequence[int]
    """`label_to_cat_id[label]` is the category id of contiguous `label` in `coco` (detections are mapped back
    with it; results files carry category ids)."""

    cat_id_to_label: Mapping[int, int]
    """The inverse of `label_to_cat_id`: category id in `coco` -> contiguous label. Annotations of other category
    ids are not part of the ground truth."""

    @property
    def coco(self) -> Any:
        """The ground truth as a pycocotools `COCO` index over this dataset's images (image ids as in the samples'
        `image_id`): every annotation with `bbox` (XYWH, original pixels), `category_id`, `area` and `iscrowd`
        (crowd regions, VOC's difficult objects: ignored by the evaluation, never positives in training). The
        COCO evaluator scores against it, the VOC evaluator and the plots read it through `ground_truth()`. May be
        built lazily (training workers never need it)."""
        ...

    def __len__(self) -> int:
        """The number of samples."""
        ...

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        """Sample `index` as `(image, target)` (module docstring): a `tv_tensors.Image` uint8 CHW and a dict with
        `boxes` (`tv_tensors.BoundingBoxes` XYXY), `labels` (int64 contiguous), `image_id`, `orig_size`; after
        `transforms` when the dataset has them. `framework.data.datasets.coco.detection_sample` builds exactly
        this from an image tensor, boxes and labels."""
        ...


@runtime_checkable
class Evaluator(Protocol):
    """Scores detections against a dataset's ground truth, detectron2's `DatasetEvaluator` API:
    `reset()` → `process(...)` per batch → `evaluate()`. One evaluator serves every evaluation round of a run.
    `CocoEvaluator` and `VOCEvaluator` are the built-in ones (`framework.evaluation.build.build_evaluator`)."""

    primary_metric: str
    """The key of `evaluate()`'s dict that ranks checkpoints (`trainer.best_metric=auto`): `bbox/mAP` (COCO),
    `voc_mAP` (VOC)."""

    class_names: list[str]
    """Class names by contiguous label (per-class tables, plots, visualizations)."""

    summary: str
    """Human-readable result of the last `evaluate()` (the COCO 12-line summary, the VOC mAP line); "" before."""

    per_class: list[dict[str, Any]]
    """One row per class after `evaluate()` (at least `class` and `AP50`; COCO adds `AP`, `AP75`), [] before."""

    def reset(self) -> None:
        """Forget everything processed so far."""
        ...

    def process(self, image_ids: Sequence[int], detections: Sequence[Mapping[str, Tensor]]) -> None:
        """Record one batch: `image_ids[i]` (the samples' `image_id`) and its detections (`boxes` XYXY in original
        pixels, `scores`, contiguous `labels`; a mask model's also `masks`, bool [N, H, W] at the original size, or
        their RLEs as `rles`). An image with no detections still counts (its ground truth
        becomes misses); an image processed twice (a distributed sampler's padding) counts once."""
        ...

    def evaluate(self) -> dict[str, float]:
        """The metrics by name over everything processed since `reset()` (COCO: the 12 `bbox/…` numbers, and the
        12 `segm/…` ones for a mask model; VOC: `voc_mAP`); also fills `summary` and `per_class`."""
        ...

    def format_per_class(self) -> str:
        """`per_class` as an aligned text table (call after `evaluate()`)."""
        ...

    def write_results(self, path: str | Path) -> Path:
        """Write the processed detections as a COCO results JSON (a list of `{image_id, category_id, bbox (XYWH),
        score}`), creating parent folders; returns the path. (`CocoEvaluator.write_results(path, task="segm")` writes
        the masks as RLE.)"""
        ...


@runtime_checkable
class Backbone(Protocol):
    """Images → feature maps (see `framework.models.backbones.base.Backbone` for the shared stage numbering,
    freezing and BatchNorm handling). An `nn.Module`; `Detector` calls the neck with `in_channels=out_channels`
    and `in_strides=strides`, so a config never repeats them."""

    out_channels: list[int]
    """Channels of each returned feature map, finest first."""

    strides: list[int]
    """Stride (input pixels per feature cell) of each returned map, finest first, e.g. [8, 16, 32]."""

    def __call__(self, images: Tensor) -> list[Tensor]:
        """`[B, 3, H, W]` float images → one `[B, out_channels[i], ~H / strides[i], ~W / strides[i]]` map each."""
        ...


@runtime_checkable
class Neck(Protocol):
    """Backbone features → pyramid features (FPN, PAN). Built by `Detector` with `in_channels` and `in_strides`
    from the backbone; the head is built with its `out_channels` and `strides`."""

    out_channels: int | list[int]
    """Channels of every output level (one int), or one per level."""

    strides: list[int]
    """Stride of each output level, finest first."""

    def __call__(self, features: list[Tensor]) -> list[Tensor]:
        """The backbone's maps → one map per output level."""
        ...


@runtime_checkable
class Head(Protocol):
    """Pyramid features → losses (training) or detections (inference). An `nn.Module` that owns its training
    logic: priors, assignment, losses and decoding (from the pieces in `framework.models.ops` and `.losses`).
    `Detector` builds it with `in_channels=` and `strides=` of the neck (a config makes it a partial:
    `_partial_: true`), and calls `loss` in train mode, `predict` in eval mode."""

    num_classes: int
    """Foreground classes K; labels are `0..K-1` (the trainer checks it against the dataset's `num_classes`)."""

    # Optional: a class attribute `needs_masks = True` makes the head a mask head. `engine.build` then builds the
    # datasets with `with_masks=True`, so each target also carries `masks` (uint8 `[N, h, w]` in the pixels of its
    # image before padding, aligned with `boxes`), and `predict` adds `masks` per image: bool `[N, H, W]` at
    # `orig_sizes` when given, else at `image_sizes`. A head without it is a box head and its data reads no masks.

    def loss(self, feats: Sequence[Tensor], targets: Sequence[dict[str, Any]],
             image_sizes: Sequence[tuple[int, int]] | None = None) -> dict[str, Tensor]:
        """The training losses by name (`loss_cls`, `loss_box`, …), each a scalar tensor; the trainer sums them
        for the backward pass and logs each. `targets` are the batch's target dicts (boxes XYXY in the pixels of
        the padded batch, contiguous labels); `image_sizes` each image's (h, w) before padding."""
        ...

    def predict(self, feats: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
                orig_sizes: Sequence[tuple[int, int]] | None = None) -> list[dict[str, Tensor]]:
        """Detections per image (module docstring): `boxes` XYXY clipped to `image_sizes`, then rescaled to
        `orig_sizes` when given, `scores`, contiguous `labels`. `framework.models.ops.postprocess.Postprocessor`
        does the threshold, NMS, top-k and rescaling."""
        ...


@runtime_checkable
class ExportableHead(Head, Protocol):
    """A `Head` that `framework.export` can put into an ONNX graph: a one-stage head whose `predict` is "dense
    scores → per-level top-k → decode → `Postprocessor`". The export runs `dense_predictions` and then the same
    selection as `Postprocessor`, written with fixed-shape outputs (`framework.export.select_detections`).
    Two-stage heads (Faster R-CNN) have no `dense_predictions`: their second stage runs on a data-dependent set
    of proposals per image, and export refuses them."""

    postprocess: Any
    """The head's `Postprocessor` (score_thr, nms_pre, nms_iou_thr, max_per_img, nms_type, class_agnostic,
    min_size): the export applies the same settings in the graph."""

    # Optional, for a head with prototype masks (YOLO-seg); the export looks for them by name, never by class:
    # - `dense_mask_predictions(features) -> (boxes, scores, level_sizes, coefficients [B, N, M], prototypes
    #   [B, M, h, w])`: `dense_predictions` plus every prior's mask coefficients and the image's prototypes, from
    #   one forward pass. The export then adds the outputs `mask_coefficients` (per detection, or per prior without
    #   NMS) and `prototypes`.
    # - `paste_masks(coefficients [n, M], prototypes [M, h, w], boxes [n, 4], image_size, out_size) -> bool
    #   [n, *out_size]`: the masks `predict` returns, from those outputs for one image (boxes in `out_size`
    #   pixels); `framework.export.verify_onnx` rebuilds masks from the ONNX outputs with it.

    def dense_predictions(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[int]]:
        """Every prior decoded, before any selection: `(boxes [B, N, 4]` XYXY in input pixels, not clipped;
        `scores [B, N, K]` the per-class probabilities `predict` ranks by; `level_sizes` the priors of each pyramid
        level in order, summing to N`). With the same input, `predict` must equal `Postprocessor` applied to
        these after the per-level top-`nms_pre` (tests/test_export.py checks it bit for bit for the built-in
        heads). Must trace under `torch.export` with symbolic image sizes: prior grids computed with plain tensor
        ops (the generators' `compute`, not their per-shape caches), no Python branch on tensor values."""
        ...
