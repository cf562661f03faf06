"""Ground truth of a batch as padded tensors, so that assignment and losses need no loop over images."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence


def pad_targets(targets: Sequence[dict], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Boxes `[B, M, 4]`, labels `[B, M]` and a validity mask `[B, M]`, M being the most boxes in one image."""
    boxes = [t["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4) for t in targets]
    labels = [t["labels"].to(device=device, dtype=torch.long).reshape(-1) for t in targets]
    if max((len(b) for b in boxes), default=0) == 0:
        n = len(targets)
        return (torch.zeros(n, 0, 4, device=device), torch.zeros(n, 0, dtype=torch.long, device=device),
                torch.zeros(n, 0, dtype=torch.bool, device=device))
    valid = pad_sequence([torch.ones(len(b), dtype=torch.bool, device=device) for b in boxes], batch_first=True)
    return (pad_sequence(boxes, batch_first=True), pad_sequence(labels, batch_first=True, padding_value=-1), valid)
