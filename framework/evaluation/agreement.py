"""How many of a reference model's detections another model reproduces: the yardstick of "the same detector".

Used to hold converted torchvision weights to torchvision's own detections (tests, benchmarks/inference.py). A
detection is reproduced by one with the same label, a score within `score_tol` and a box of IoU >= `iou_thr`.
Zero-area boxes (an FCOS point with all four distances at 0 after ReLU, clipped at the image border; common with
random weights) have no IoU (0/0); they count as reproduced when the corners agree within `corner_tol` pixels.
Counting them as misses made identical outputs look like an 18-34 % agreement.
"""
from __future__ import annotations

from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["matched_share", "reproduced"]


def reproduced(reference: dict[str, Tensor], candidate: dict[str, Tensor], label_shift: int = 0,
               iou_thr: float = 0.99, score_tol: float = 1e-3, corner_tol: float = 1e-3) -> Tensor:
    """Bool per reference detection: whether `candidate` has one matching it. `label_shift` is subtracted from the
    reference labels (torchvision's R-CNN counts background as class 0)."""
    ref_boxes, cand_boxes = reference["boxes"].double(), candidate["boxes"].double()
    if len(ref_boxes) == 0 or len(cand_boxes) == 0:
        return ref_boxes.new_zeros(len(ref_boxes), dtype=bool)
    iou = box_iou(ref_boxes, cand_boxes).nan_to_num(0.0)
    same_corners = (ref_boxes[:, None] - cand_boxes[None]).abs().amax(-1) <= corner_tol
    same_place = (iou >= iou_thr) | same_corners
    same_label = (reference["labels"][:, None] - label_shift) == candidate["labels"][None]
    same_score = (reference["scores"][:, None].double() - candidate["scores"][None].double()).abs() <= score_tol
    return (same_place & same_label & same_score).any(dim=1)


def matched_share(references: list[dict[str, Tensor]], candidates: list[dict[str, Tensor]], label_shift: int = 0,
                  **tolerances: float) -> float:
    """The share of all reference detections (over images) that the candidates reproduce; 1.0 when there are none."""
    hits = total = 0
    for ref, cand in zip(references, candidates, strict=True):
        found = reproduced(ref, cand, label_shift, **tolerances)
        hits, total = hits + int(found.sum()), total + len(found)
    return hits / total if total else 1.0
