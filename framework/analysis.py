"""What a detector costs: parameters, FLOPs, receptive fields and latency, per component (backbone, neck, head).

Library code, usable without Hydra (`tools/analyze.py` is the command line):

    report = analyze(model, input_size=(800, 1333))
    print(format_table(report))

FLOPs come from torch's own counter (`torch.utils.flop_counter.FlopCounterMode`), which counts a multiply-add as
2 FLOPs and only counts convolutions, matrix products and attention (not normalisation, activations, NMS): what papers
call "FLOPs" is usually the number of multiply-adds, i.e. our GMACs = GFLOPs / 2.

Receptive fields are theoretical (every input pixel that can influence an output pixel, unclipped by the image
border), found by following the data through one forward pass rather than by reading module lists, see
`receptive_fields`.
"""
from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode  # the machinery FlopCounterMode is built on
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["COMPONENTS", "FLOPS_NOTE", "analyze", "component_flops", "count_flops", "count_parameters",
           "format_table", "measure_latency", "parameter_breakdown", "receptive_field", "receptive_fields"]

COMPONENTS = ("backbone", "neck", "head")
FLOPS_NOTE = ("FLOPs from torch.utils.flop_counter on the eval forward of one image: a multiply-add counts as 2 FLOPs "
              "(GMACs = GFLOPs / 2); only convolutions, matrix products and attention are counted.")
_aten = torch.ops.aten
_PRECISION_NAMES = {None: "fp32", torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd for the duration (costs are those of inference), the previous mode restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


# ------------------------------------------------------------------------------------------------------ parameters


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (each shared parameter once); `trainable_only`: those with requires_grad."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(model: nn.Module) -> dict[str, dict[str, int]]:
    """{component: {"total", "trainable"}} for backbone, neck and head (those the model has), plus "total" for the
    whole model, so parameters held outside the three parts (if any) still count."""
    parts = {name: getattr(model, name) for name in COMPONENTS if isinstance(getattr(model, name, None), nn.Module)}
    parts["total"] = model
    return {name: {"total": count_parameters(m), "trainable": count_parameters(m, trainable_only=True)}
            for name, m in parts.items()}


# ----------------------------------------------------------------------------------------------------------- FLOPs


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """(FLOPs, result) of `fn(*args, **kwargs)` under torch's FlopCounterMode (multiply-add = 2 FLOPs)."""
    with FlopCounterMode(display=False) as counter:
        result = fn(*args, **kwargs)
    return counter.get_total_flops(), result


def component_flops(model: nn.Module, images: Tensor) -> dict[str, int]:
    """FLOPs of the eval forward of a Detector, split into backbone, neck and head, plus "total".

    The parts are run in sequence as `Detector.forward` runs them (backbone → neck → `head.predict`), each under
    its own counter; "total" is counted separately on `model(images)`, so it equals the sum unless the model does
    work outside its three parts. Head FLOPs can depend on the input (e.g. how many proposals reach a second stage).
    """
    image_sizes = [tuple(images.shape[-2:])] * images.shape[0]
    with _eval_mode(model):
        total, _ = count_flops(model, images)
        backbone, feats = count_flops(model.backbone, images)
        neck, feats = count_flops(model.neck, feats)
        head, _ = count_flops(model.head.predict, feats, image_sizes, None)
    return {"backbone": backbone, "neck": neck, "head": head, "total": total}


# ----------------------------------------------------------------------------------------------- receptive fields


def receptive_field(layers: Sequence[tuple[int, int, int]]) -> tuple[int, int]:
    """(receptive field, jump) after a chain of (kernel, stride, dilation) layers applied to single pixels.

    RF_{l+1} = RF_l + (k_eff − 1)·jump_l with k_eff = dilation·(k − 1) + 1, and jump_{l+1} = jump_l·stride, where
    the jump (the product of the strides so far) is the distance in input pixels between neighbouring outputs.
    """
    rf, jump = 1, 1
    for kernel, stride, dilation in layers:
        rf += dilation * (kernel - 1) * jump
        jump *= stride
    return rf, jump


_RF = "_analysis_receptive_field"  # tensor attribute: ((rf_h, rf_w), (jump_h, jump_w), exact)
_POOLS = {_aten.max_pool2d, _aten.max_pool2d_with_indices, _aten.avg_pool2d}
# ops that mix positions in ways the recursion does not describe: attention (global or windowed), and ops that
# resample space (by name prefix), besides strided slicing of H or W (YOLOv5's Focus) and transposed convolutions
_UNMODELLED = {getattr(_aten, name) for name in (
    "_softmax", "scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_flash_attention_for_cpu") if hasattr(_aten, name)}
_RESAMPLING = ("upsample", "_upsample", "pixel_shuffle", "pixel_unshuffle", "grid_sampler", "im2col", "col2im")


def _pair(v: Any) -> tuple[int, int]:
    v = [int(x) for x in v] if isinstance(v, (list, tuple)) else [int(v)]
    return (v[0], v[-1])


def _grow(meta: tuple, kernel: Any, stride: Any, dilation: Any) -> tuple:
    (rf, jump, exact), k, s, d = meta, _pair(kernel), _pair(stride), _pair(dilation)
    return (tuple(rf[i] + d[i] * (k[i] - 1) * jump[i] for i in range(2)), tuple(jump[i] * s[i] for i in range(2)),
            exact)


def _spatial(t: Tensor) -> tuple[int, ...] | None:
    return tuple(t.shape[-2:]) if t.ndim == 4 else None  # (H, W) of NCHW; only used to spot global pooling


class _ReceptiveFieldMode(TorchDispatchMode):
    """Propagates (receptive field, jump, exact) along every aten op of a forward pass, as a tensor attribute.

    Convolutions and 2-D pools grow it by the recursion of `receptive_field`; any other op gives its outputs the
    per-dimension maximum over its tagged inputs, so where branches meet (residual add, concatenation) the result
    is the largest-RF path, and a 1×1 shortcut never doubles the stride the way a walk over the module list would.
    A global reduction (SE blocks' average pooling to 1×1) drops the tag: its gating is not counted as spatial
    extent, otherwise every SE network would see the whole image. Attention, transposed convolutions and other ops
    that change the spatial size (upsampling, space-to-depth) clear `exact`.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's signature)
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tagged = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, Tensor) and hasattr(t, _RF)]
        if not tagged:
            return out
        params = {a.name: a.default_value for a in func._schema.arguments if a.has_default_value()}
        params.update(zip((a.name for a in func._schema.arguments), args), **kwargs)
        packet = func.overloadpacket
        first = params.get("input", params.get("self"))
        outs = [o for o in pytree.tree_leaves(out) if isinstance(o, Tensor)]
        if packet is _aten.convolution and params["weight"].ndim == 4 and not params["transposed"]:
            meta = _grow(getattr(first, _RF), params["weight"].shape[2:], params["stride"], params["dilation"])
        elif packet in _POOLS:
            kernel = params["kernel_size"]
            meta = _grow(getattr(first, _RF), kernel, params["stride"] or kernel, params.get("dilation", 1))
        else:
            rfs, jumps, exact = zip(*(getattr(t, _RF) for t in tagged))
            meta = (tuple(map(max, zip(*rfs))), tuple(map(max, zip(*jumps))), all(exact))
            sizes_in = {_spatial(t) for t in tagged} - {None}
            sizes_out = {_spatial(o) for o in outs} - {None}
            if sizes_out == {(1, 1)} and sizes_in - sizes_out:  # global pooling
                return out
            if packet in _UNMODELLED or packet is _aten.convolution or packet.__name__.startswith(_RESAMPLING) or (
                    packet is _aten.slice and first.ndim == 4 and params["dim"] % 4 >= 2 and params["step"] > 1):
                meta = (*meta[:2], False)
        for o in outs:
            setattr(o, _RF, meta)
        return out


def _scalar(pair: tuple[int, int]) -> int | list[int]:
    return pair[0] if pair[0] == pair[1] else list(pair)


def receptive_fields(backbone: nn.Module, input_size: Sequence[int] = (224, 224)) -> list[dict[str, Any]]:
    """Theoretical receptive field and stride of each backbone output: [{"index", "channels", "stride",
    "receptive_field"}], an int per value, or [h, w] when the two directions differ.

    Method: one forward pass of a 1×3×H×W input under a dispatch mode that follows every aten op (see
    `_ReceptiveFieldMode`): Conv2d, MaxPool2d and AvgPool2d grow the field, in modules or called functionally
    (SPPF's pools, timm's same-padding convolutions); parallel branches merge to the largest. The input size only
    has to be large enough for the forward to run (a small one is faster). `index` is the backbone's `out_indices`
    entry when it has one, else the output's position.

    Limits: padding is ignored (the field is centred and not clipped by the image border). Attention, transposed
    convolutions and ops that resample space (upsampling, space-to-depth) are not modelled: when one lies on the
    path, or the stride found disagrees with the backbone's declared `strides` (then reported instead), the entry
    gets a "note" saying its receptive field is unreliable.
    """
    device = next((p.device for p in backbone.parameters()), torch.device("cpu"))
    x = torch.zeros(1, 3, *input_size, device=device)
    setattr(x, _RF, ((1, 1), (1, 1), True))
    with _eval_mode(backbone), _ReceptiveFieldMode():
        outs = backbone(x)
    outs = [outs] if isinstance(outs, Tensor) else list(outs)
    indices = list(getattr(backbone, "out_indices", range(len(outs))))
    declared = getattr(backbone, "strides", None)
    result = []
    for i, out in enumerate(outs):
        rf, jump, exact = getattr(out, _RF, (None, None, False))
        entry = {"index": indices[i], "channels": int(out.shape[1]), "stride": _scalar(jump) if jump else None,
                 "receptive_field": _scalar(rf) if rf else None}
        if declared is not None and entry["stride"] != declared[i]:
            entry["note"] = (f"the walk found stride {entry['stride']}, the backbone declares {declared[i]}: the "
                             "receptive field is unreliable")
            entry["stride"] = declared[i]
        elif not exact:
            entry["note"] = ("attention, resampling or another op the recursion does not model lies on the path: "
                             "the receptive field is unreliable")
        result.append(entry)
    return result


# --------------------------------------------------------------------------------------------------------- latency


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module, images: Tensor, runs: int = 20, warmup: int = 5, dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Wall-clock time of `model(images)` in eval mode without autograd, on the device of `images`.

    `warmup` untimed passes first (cuDNN autotuning, allocator, lazy init); CUDA is synchronised around each timed
    pass so the time is the GPU's, not the launch's. `dtype` (bf16/fp16) runs under autocast, as training with
    `trainer.precision` does. Returns mean, median and 90th percentile in ms, and images/s from the mean.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    device = images.device
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    times = []
    with _eval_mode(model), autocast:
        for i in range(warmup + runs):
            _synchronize(device)
            start = time.perf_counter()
            model(images)
            _synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {"mean_ms": float(ms.mean()), "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "images_per_s": float(images.shape[0] / (ms.mean() / 1000))}


# -------------------------------------------------------------------------------------------------------- the report


def analyze(
    model: nn.Module,
    input_size: Sequence[int] = (800, 1333),
    batch_size: int = 1,
    latency_runs: int = 20,
    warmup: int = 5,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Everything above for a Detector at `input_size` (h, w): parameters, per-image FLOPs, backbone receptive
    fields, and latency at `batch_size` (skipped when `latency_runs` is 0). The model is moved to `device`.
    Inputs are random images: costs do not depend on the weights, except a head's data-dependent work."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    h, w = (int(v) for v in input_size)
    images = torch.randn(batch_size, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    flops = component_flops(model, images[:1])
    report: dict[str, Any] = {
        "components": {name: type(getattr(model, name)).__name__ for name in COMPONENTS},
        "input_size": [h, w],
        "batch_size": batch_size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "params": parameter_breakdown(model),
        "flops": {name: {"flops": f, "gflops": f / 1e9, "gmacs": f / 2e9} for name, f in flops.items()},
        "flops_note": FLOPS_NOTE,
        "receptive_fields": receptive_fields(model.backbone, (h, w)),
        "latency": None,
    }
    if latency_runs > 0:
        if channels_last:
            model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        report["latency"] = {**measure_latency(model, images, latency_runs, warmup, dtype), "runs": latency_runs,
                             "warmup": warmup, "precision": _PRECISION_NAMES.get(dtype, str(dtype)),
                             "channels_last": channels_last}
    return report


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def format_table(report: dict[str, Any]) -> str:
    """The report as aligned text tables: cost per component, backbone outputs, latency."""
    h, w = report["input_size"]
    names = report["components"]
    lines = [f"Input {h}×{w} on {report['device']}", "",
             f"{'component':<10} {'class':<16} {'params':>10} {'trainable':>10} {'GFLOPs':>9} {'GMACs':>9}"]
    for name in (*COMPONENTS, "total"):
        p, f = report["params"][name], report["flops"][name]
        lines.append(f"{name:<10} {names.get(name, ''):<16} {_millions(p['total']):>10} "
                     f"{_millions(p['trainable']):>10} {f['gflops']:>9.2f} {f['gmacs']:>9.2f}")
    lines += [f"({report['flops_note']})", "", "Backbone outputs (theoretical receptive field, unclipped):",
              f"{'index':>5} {'channels':>8} {'stride':>6} {'receptive field':>15}"]
    for r in report["receptive_fields"]:
        lines.append(f"{r['index']:>5} {r['channels']:>8} {str(r['stride']):>6} {str(r['receptive_field']):>15}"
                     + (f"  ({r['note']})" if "note" in r else ""))
    lat = report.get("latency")
    if lat:
        lines += ["", f"Latency, batch {report['batch_size']}, {lat['precision']}"
                      f"{', channels_last' if lat['channels_last'] else ''}, {lat['runs']} runs after "
                      f"{lat['warmup']} warm-up: mean {lat['mean_ms']:.2f} ms, median {lat['median_ms']:.2f} ms, "
                      f"p90 {lat['p90_ms']:.2f} ms, {lat['images_per_s']:.1f} images/s"]
    return "\n".join(lines)
