"""Any timm model as a backbone, through timm's `features_only` mode.

timm (pytorch-image-models) has hundreds of ImageNet-pretrained networks with a uniform multi-scale feature API
(`features_only=True`, `feature_info.channels()` / `.reduction()`), so one wrapper opens all of them, including
SE-ResNet-50 with weights. timm is an optional dependency (`pip install "framework[timm]"`): it is imported when a
TimmBackbone is built, never when this module is imported.
"""
from __future__ import annotations

import difflib
from typing import Any, Sequence

from torch import Tensor, nn

from framework.models.backbones.base import Backbone, PretrainedWeightsError, check_frozen_stages

INSTALL_HINT = 'pip install "framework[timm]" (or pip install timm)'


class TimmNotInstalledError(ImportError):
    """Raised when a TimmBackbone is built without timm installed."""


def _import_timm() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise TimmNotInstalledError(
            f"TimmBackbone needs the optional package timm, which is not installed: {INSTALL_HINT}. "
            "The torchvision backbones (model/backbone=resnet50, ...) need nothing extra."
        ) from exc
    return timm


def _subtree_ends(names: list[str]) -> dict[str, int]:
    """For each module name in `named_modules()` order (pre-order), the position of the last module inside it."""
    ends: dict[str, int] = {}
    for pos, name in enumerate(names):
        parts = name.split(".") if name else []
        for k in range(len(parts) + 1):
            ends[".".join(parts[:k])] = pos
    return ends


class TimmBackbone(Backbone):
    """`timm.create_model(model_name, features_only=True, out_indices=..., pretrained=...)` as a backbone.

    Args:
        model_name: any timm model name, optionally with a pretrained tag ("resnet18", "convnext_tiny",
            "efficientnet_b0", "seresnet50.a1_in1k", ...).
        out_indices: timm's feature levels, which are the model's own: most CNNs have 5 levels at strides 2, 4, 8,
            16, 32 (ResNet, EfficientNet, MobileNet), ConvNeXt has 4 at 4, 8, 16, 32. The default, the last three
            levels (negative indices count from the end), is strides 8, 16, 32 for all of these.
        frozen_stages: -1 trains everything; k >= 0 freezes every module up to and including the one that
            produces feature level k (level 0 is the stem for ResNet-like models). Modules are taken in
            registration order, which is execution order in timm's CNNs; parameters held directly by a container
            (e.g. a ViT's cls_token) are not frozen.
        norm_eval: keep BatchNorm layers (timm's BatchNormAct2d included) in eval mode while training.
        pretrained: download timm's pretrained weights (from the Hugging Face Hub; needs internet).
        model_kwargs: further arguments for `timm.create_model` (e.g. drop_path_rate, output_stride).
    """

    def __init__(
        self,
        model_name: str = "resnet18",
        out_indices: Sequence[int] = (-3, -2, -1),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        pretrained: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(frozen_stages, norm_eval)
        timm = _import_timm()
        if not timm.is_model(model_name):
            close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"Unknown timm model {model_name!r}.{hint} List them with timm.list_models('*pattern*').")
        requested = tuple(int(i) for i in out_indices)
        if not requested:
            raise ValueError("out_indices must name at least one feature level")
        kwargs = dict(model_kwargs or {})
        try:
            self.body = timm.create_model(
                model_name, features_only=True, out_indices=requested, pretrained=pretrained, **kwargs)
        except IndexError:
            info = timm.create_model(model_name, features_only=True, **kwargs).feature_info
            raise ValueError(
                f"out_indices {requested} do not fit timm model {model_name!r}, which has {len(info)} feature levels "
                f"(0..{len(info) - 1}, or negative from the end) at strides {info.reduction()}"
            ) from None
        except (OSError, RuntimeError) as exc:  # network and file errors (requests', huggingface_hub's), hashes
            if not pretrained:
                raise
            raise PretrainedWeightsError(
                f"Could not load timm's pretrained weights for {model_name!r}: {str(exc).rstrip('.')}. Without internet, place the "
                "Hugging Face Hub cache of the model on this machine (HF_HUB_CACHE) or train from scratch with "
                "model.backbone.pretrained=false."
            ) from exc
        info = self.body.feature_info
        self.num_levels = len(info)
        self.out_indices = tuple(i % self.num_levels for i in info.out_indices)
        if list(self.out_indices) != sorted(set(self.out_indices)):
            raise ValueError(f"out_indices must be increasing feature levels, got {requested}")
        check_frozen_stages(frozen_stages, self.num_levels - 1)
        self.model_name = model_name
        self.out_channels = list(info.channels())
        self.strides = list(info.reduction())
        self._stage_names = self._group_modules_by_level()
        if frozen_stages >= 0 and self._stage_names is None:
            raise ValueError(f"frozen_stages is not supported for timm model {model_name!r}: its feature modules "
                             "cannot be located in the features_only network; use frozen_stages=-1")
        self._freeze()

    def _group_modules_by_level(self) -> list[list[str]] | None:
        """Names of the largest modules of `body` that run after feature level k-1 and up to level k, per level
        up to the last output; None when a level's module cannot be found."""
        names = [n for n, _ in self.body.named_modules()]
        ends = _subtree_ends(names)
        groups: list[list[str]] = []
        lo = 0  # position 0 is `body` itself, never frozen as a whole
        for level in range(max(self.out_indices) + 1):
            target = self.body.feature_info.module_name(level)
            found = [n for n in names if n in (target, target.replace(".", "_")) or n.endswith("." + target)]
            if not found:
                return None
            hi, pos, group = ends[found[0]], lo + 1, []
            while pos <= hi:
                if ends[names[pos]] <= hi:  # wholly inside this level: take it and skip its subtree
                    group.append(names[pos])
                    pos = ends[names[pos]] + 1
                else:  # a container that also holds later levels: look inside
                    pos += 1
            groups.append(group)
            lo = hi
        return groups

    def stages(self) -> list[nn.Module]:
        if self._stage_names is None:
            raise NotImplementedError(f"timm model {self.model_name!r}: feature modules cannot be located")
        return [nn.ModuleList([self.body.get_submodule(n) for n in group]) for group in self._stage_names]

    def frozen_modules(self) -> list[nn.Module]:
        return [] if self.frozen_stages < 0 else super().frozen_modules()

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))
