"""Cityscapes' official instance-level AP, next to the COCO-style mask AP, for a mask model on Cityscapes.

The COCO evaluator scores Cityscapes like any dataset (`segm/mAP`, group regions as crowd). The benchmark's own
number comes from cityscapesscripts' `evalInstanceLevelSemanticLabeling`: it matches predicted masks to the
ground-truth `*_gtFine_instanceIds.png` pixel by pixel, ignores instances under 100 pixels and void pixels, and
averages AP over IoU 0.5:0.95 (`cityscapes/AP`) and at 0.5 (`cityscapes/AP50`). Its inputs are files: one PNG per
predicted instance and one text file per image (`<png> <label id> <score>` per line), written here from the
evaluator's RLE results into a temporary folder, removed afterwards. Its matching reads every prediction PNG and
compares it with every ground-truth instance of its class at full resolution: minutes on the 500 val images, so
tools/test.py runs it (`CocoEvaluator.evaluate_official`), the evaluations during training do not.

cityscapesscripts is optional (`pip install cityscapesscripts`, or the `cityscapes` extra); without it, an info
line says so and only the COCO-style numbers are reported.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

__all__ = ["OFFICIAL_METRIC_NAMES", "CityscapesInstanceAP", "official_scorer"]

logger = logging.getLogger("framework")

OFFICIAL_METRIC_NAMES: tuple[str, ...] = ("cityscapes/AP", "cityscapes/AP50")
_INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"


class _NumpyCompat:
    """numpy as cityscapesscripts 2.x expects it: it calls `np.in1d`, which numpy 2.4 removed (`np.isin` is the
    same test). Set as that one module's `np` while it runs, never as numpy itself."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def in1d(a: Any, b: Any, **kwargs: Any) -> np.ndarray:
        return np.isin(a, b, **kwargs).ravel()


@contextlib.contextmanager
def _official_module() -> Iterator[Any]:
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as official

    saved = official.np
    if not hasattr(np, "in1d"):
        official.np = _NumpyCompat()
    try:
        yield official
    finally:
        official.np = saved


class CityscapesInstanceAP:
    """Scores COCO mask results (RLE) with cityscapesscripts' instance-level evaluation.

    Args:
        gt_files: image id → its `<city>_<seq>_<frame>_gtFine_instanceIds.png` (Cityscapes' file naming, which
            the official script parses).
        cat_to_label_id: COCO category id of the results → Cityscapes label id (person 24, car 26, …).
    """

    def __init__(self, gt_files: Mapping[int, str | os.PathLike[str]], cat_to_label_id: Mapping[int, int]) -> None:
        self.gt_files = {int(k): Path(v) for k, v in gt_files.items()}
        self.cat_to_label_id = {int(k): int(v) for k, v in cat_to_label_id.items()}
        bad = [p.name for p in self.gt_files.values() if not p.name.endswith(_INSTANCE_IDS_SUFFIX)]
        if bad:
            raise ValueError(f"ground-truth files must be named <city>_<seq>_<frame>{_INSTANCE_IDS_SUFFIX}: {bad[0]}")

    def __call__(self, results: Sequence[Mapping[str, Any]], image_ids: Sequence[int]) -> dict[str, float]:
        """`{"cityscapes/AP": …, "cityscapes/AP50": …}` over `image_ids` (their results; none is no detection)."""
        with tempfile.TemporaryDirectory(prefix="cityscapes_eval_") as tmp:
            root = os.path.abspath(tmp)  # abspath, as the script compares paths with it (not resolved links)
            preds, gts = self._write_predictions(results, image_ids, Path(root))
            return self._evaluate(root, preds, gts)

    def _write_predictions(self, results: Sequence[Mapping[str, Any]], image_ids: Sequence[int],
                           root: Path) -> tuple[list[str], list[str]]:
        """One text file and its instance PNGs per image, in the official layout; returns (txt files, gt files)."""
        by_image: dict[int, list[Mapping[str, Any]]] = {}
        for r in results:
            by_image.setdefault(int(r["image_id"]), []).append(r)
        (root / "masks").mkdir()
        preds, gts = [], []
        for img_id in image_ids:
            gt = self.gt_files.get(int(img_id))
            if gt is None:
                raise ValueError(f"image id {img_id} has no ground-truth instanceIds file")
            stem = gt.name[: -len(_INSTANCE_IDS_SUFFIX)]
            lines = []
            for k, r in enumerate(by_image.get(int(img_id), [])):
                label_id = self.cat_to_label_id.get(int(r["category_id"]))
                if label_id is None:
                    continue
                png = root / "masks" / f"{stem}_{k}.png"
                Image.fromarray(mask_utils.decode(dict(r["segmentation"])) * 255).save(png, compress_level=1)
                lines.append(f"masks/{png.name} {label_id} {float(r['score']):.6f}\n")
            txt = root / f"{stem}_pred.txt"
            txt.write_text("".join(lines))
            preds.append(str(txt))
            gts.append(str(gt))
        return preds, gts

    @staticmethod
    def _evaluate(root: str, preds: list[str], gts: list[str]) -> dict[str, float]:
        printed = io.StringIO()
        try:
            with _official_module() as official, contextlib.redirect_stdout(printed):
                args = official.CArgs()
                vars(args).update(vars(official.args))  # the official defaults (overlaps, region sizes, …)
                args.predictionPath, args.predictionWalk = root, None
                args.quiet, args.JSONOutput, args.distanceAvailable = True, False, False
                official.setInstanceLabels(args)
                gt_instances = official.instances2dict(gts, False)  # keyed by abspath, as the matching looks up
                matches = official.matchGtWithPreds(preds, gts, gt_instances, args)
                averages = official.computeAverages(official.evaluateMatches(matches, args), args)
        except SystemExit as exc:  # the script's printError exits
            raise RuntimeError(f"cityscapesscripts' instance evaluation failed: {printed.getvalue().strip()}") from exc
        return {"cityscapes/AP": float(averages["allAp"]), "cityscapes/AP50": float(averages["allAp50%"])}


def official_scorer(dataset: Any) -> CityscapesInstanceAP | None:
    """The official scorer for a Cityscapes dataset built with masks; None for any other dataset, or (with an
    info line) when cityscapesscripts is not installed."""
    from framework.data.datasets.cityscapes import (CITYSCAPES_INSTANCE_LABELS, INSTANCE_IDS_SUFFIX, LEFT_SUFFIX,
                                                    CityscapesDetection)

    if not isinstance(dataset, CityscapesDetection) or not getattr(dataset, "with_masks", False):
        return None
    if importlib.util.find_spec("cityscapesscripts") is None:
        logger.info("cityscapesscripts is not installed: Cityscapes masks are scored with COCO-style AP (segm/…) "
                    "only; pip install cityscapesscripts to have tools/test.py add the official instance AP "
                    "(cityscapes/AP, cityscapes/AP50)")
        return None
    label_ids = {lb.name: lb.id for lb in CITYSCAPES_INSTANCE_LABELS}
    gt_files = {int(img_id): Path(dataset.ann_dir) / (info["file_name"][: -len(LEFT_SUFFIX)] + INSTANCE_IDS_SUFFIX)
                for img_id, info in dataset.coco.imgs.items()}
    return CityscapesInstanceAP(gt_files, {int(c): label_ids[name]
                                           for c, name in zip(dataset.label_to_cat_id, dataset.classes)})
