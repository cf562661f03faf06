"""What the training loop reports between log lines: losses, lr, gradient norm, throughput, where the time went,
memory and the ETA. Kept out of the loop so the loop reads as the algorithm.

Losses are summed on the device and read once per log interval, so the hot path holds no host–device sync for
logging. Data time is the time spent blocked on the loader; the rest of the window is compute (on a GPU this is
honest at window scale, because reading the losses at the end of the window waits for the queued work).
"""
from __future__ import annotations

import resource
import sys
import time
from typing import Any

import torch


def memory_gib(device: torch.device) -> float:
    """Peak memory of this process: allocated GPU memory on CUDA, else the resident set size (RSS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kib / (2**30 if sys.platform == "darwin" else 2**20)


def format_eta(seconds: float) -> str:
    return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"  # may exceed 24 h


class Window:
    """Accumulates one log interval: loss sums, images, optimizer steps, data-wait time."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.loss_sums: dict[str, torch.Tensor] = {}
        self.batches = self.images = self.steps = 0
        self.data_time = 0.0

    def add_batch(self, losses: dict[str, torch.Tensor], images: int, data_time: float) -> None:
        for k, v in losses.items():
            self.loss_sums[k] = self.loss_sums.get(k, 0.0) + v.detach().float()
        self.batches, self.images, self.data_time = self.batches + 1, self.images + images, self.data_time + data_time

    def mean_losses(self) -> dict[str, torch.Tensor]:
        return {k: v / max(self.batches, 1) for k, v in self.loss_sums.items()}

    def timing(self, world_size: int = 1) -> dict[str, float]:
        """images/s over all ranks, and the share of the window spent waiting for data."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {"images_per_s": self.images * world_size / elapsed, "data_time": self.data_time / max(self.steps, 1),
                "step_time": elapsed / max(self.steps, 1), "data_share": self.data_time / elapsed}


def stats_text(stats: dict[str, Any]) -> str:
    """The middle of a progress line: losses, lr, gradient norm, memory, throughput, data-wait share."""
    losses = " ".join(f"{k}={v:.4f}" for k, v in stats.items() if k.startswith("loss"))
    grad = f" grad={stats['grad_norm']:.3g}" if stats.get("grad_norm") is not None else ""
    return (f"{losses} lr={stats['lr']:.3g}{grad} mem={stats['memory_gib']:.2f}G {stats['images_per_s']:.1f} img/s "
            f"data {100 * stats['data_share']:.0f}%")
