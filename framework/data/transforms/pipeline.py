"""The training pipeline: a list of transforms, some of which mix several dataset samples into one.

torchvision's `Compose` sees one `(image, target)` pair at a time, so it cannot run Mosaic or MixUp, which need
partner samples from the dataset. `Pipeline` runs the same list but hands a multi-image transform the partners it
asks for; `PipelineDataset` gives it the dataset to draw them from. Partner samples go through the transforms
listed *before the first* multi-image transform (the per-image "loading" part, e.g. a resize), as in
mmdetection's `MultiImageMixDataset`, so MixUp of a mosaic blends it with one resized image (YOLOX's recipe).

Close-mosaic: `set_epoch(epoch, max_epochs)` turns every multi-image transform off for the last
`close_mosaic_epochs` epochs. The epoch reaches the data-loader workers with the sampled indices (see
`framework.data.loader.EpochIndex`), so workers are never restarted.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch

Sample = tuple[Any, dict[str, Any]]


class MixTransform:
    """Base of transforms that build one sample out of the current one and `num_partners` others.

    `prob` is the chance per sample; the pipeline draws it (and loads partners only when it applies).
    Subclasses implement `__call__(sample, partners) -> sample`.
    """

    num_partners: int = 1
    prob: float = 1.0

    def __call__(self, sample: Sample, partners: list[Sample]) -> Sample:
        raise NotImplementedError


def iter_transforms(transforms: Sequence[Any]) -> Iterator[Any]:
    """Every transform, looking inside containers such as `Compose` and `RandomApply`."""
    for t in transforms:
        yield t
        inner = getattr(t, "transforms", None)
        if isinstance(inner, (list, tuple, torch.nn.ModuleList)):
            yield from iter_transforms(list(inner))


class Pipeline:
    """Runs `transforms` in order on `(image, target)`; multi-image ones get partners through `sample()`.

    Args:
        transforms: torchvision v2 transforms, our transforms and `MixTransform`s, in order.
        close_mosaic_epochs: turn the multi-image transforms off for this many final epochs (0: never).
    """

    def __init__(self, transforms: Sequence[Callable], close_mosaic_epochs: int = 0) -> None:
        if close_mosaic_epochs < 0:
            raise ValueError(f"close_mosaic_epochs must be >= 0, got {close_mosaic_epochs}")
        self.transforms = list(transforms)
        self.close_mosaic_epochs = int(close_mosaic_epochs)
        mixing = [i for i, t in enumerate(self.transforms) if isinstance(t, MixTransform)]
        self.partner_transforms = self.transforms[: mixing[0]] if mixing else []
        self.has_mixing = bool(mixing)
        self.epoch, self.max_epochs, self.mixing = 0, None, True

    # ------------------------------------------------------------------------------------------ epoch state
    def set_epoch(self, epoch: int, max_epochs: int | None = None) -> None:
        """Called per sample in the workers and per epoch in the main process (for the log); a no-op unless the
        epoch changed, so the per-sample call costs one comparison."""
        if (epoch, max_epochs) == (self.epoch, self.max_epochs):
            return
        self.epoch, self.max_epochs = epoch, max_epochs
        self.mixing = not (self.close_mosaic_epochs and max_epochs is not None
                           and epoch >= max_epochs - self.close_mosaic_epochs)
        for t in iter_transforms(self.transforms):
            if hasattr(t, "set_epoch"):
                t.set_epoch(epoch)

    def epoch_summary(self) -> dict[str, float]:
        """What is applied in the current epoch: 1/0 for the multi-image transforms, effective probabilities
        of ramped transforms (GridMask)."""
        summary: dict[str, float] = {}
        for t in iter_transforms(self.transforms):
            name = type(t).__name__
            if isinstance(t, MixTransform):
                summary[f"{name}.prob"] = t.prob if self.mixing else 0.0
            elif hasattr(t, "effective_prob"):
                summary[f"{name}.prob"] = float(t.effective_prob)
        return summary

    # ------------------------------------------------------------------------------------------ running
    def __call__(self, image: Any, target: dict[str, Any]) -> Sample:
        if self.has_mixing:
            raise TypeError(
                "This pipeline has multi-image transforms (Mosaic, MixUp) that need partner samples: wrap the "
                "dataset in framework.data.pipeline_dataset.PipelineDataset(dataset, pipeline) instead of passing "
                "the pipeline as the dataset's `transforms`."
            )
        return self._run(self.transforms, (image, target))

    def sample(self, index: int, load: Callable[[int], Sample], length: int) -> Sample:
        """Sample `index` through the whole pipeline; `load(i)` gives dataset item i before any transform."""
        sample = load(index)
        for t in self.transforms:
            if isinstance(t, MixTransform):
                if not self.mixing or float(torch.rand(())) >= t.prob:
                    continue
                partners = [self._run(self.partner_transforms, load(int(torch.randint(length, ()))))
                            for _ in range(t.num_partners)]
                sample = t(sample, partners)
            else:
                sample = t(*sample)
        return sample

    @staticmethod
    def _run(transforms: Sequence[Callable], sample: Sample) -> Sample:
        for t in transforms:
            sample = t(*sample)
        return sample

    def __repr__(self) -> str:
        lines = [f"    {t!r}".replace("\n", "\n    ") for t in self.transforms]
        return f"Pipeline(close_mosaic_epochs={self.close_mosaic_epochs},\n" + "\n".join(lines) + "\n)"
