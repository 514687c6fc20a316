"""Accuracy metrics and the evaluation pass over a split."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import batches, normalize


def topk_correct(logits: Tensor, targets: Tensor, ks=(1, 5)) -> dict[int, int]:
    """How many rows have the target among the top-k logits, for each k (k is capped at the class count)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top == targets[:, None]
    return {k: int(hits[:, : min(k, kmax)].any(dim=1).sum()) for k in ks}


def top_classes(logits: Tensor, k: int = 5) -> Tensor:
    """The k most likely classes per row, best first (int16: compact enough to commit for every run)."""
    return logits.topk(min(k, logits.shape[1]), dim=1).indices.to(torch.int16)


def confusion_matrix(preds: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """(true, predicted) counts."""
    idx = targets * num_classes + preds
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def forward_tta(model: nn.Module, x: Tensor, tta: str = "none") -> Tensor:
    """Logits with test-time augmentation as airbench scores it: "flip" averages in the mirror image; "flip+shift"
    also averages the mirrored views shifted one pixel up-left and down-right (reflect padding), at half weight.
    "shift" is "flip+shift" without the mirror, for data whose mirror image is another class (digits)."""
    if tta == "none":
        return model(x)

    def view_logits(view: Tensor) -> Tensor:
        return 0.5 * (model(view) + model(view.flip(-1))) if tta.startswith("flip") else model(view)

    if tta == "flip":
        return view_logits(x)
    padded, (h, w) = F.pad(x, (1, 1, 1, 1), mode="reflect"), x.shape[-2:]
    shifted = view_logits(padded[..., :h, :w]) + view_logits(padded[..., 2:, 2:])
    return 0.5 * view_logits(x) + 0.25 * shifted


@torch.inference_mode()
def predict(model: nn.Module, x: Tensor, dataset: str, batch_size: int, device, autocast=None, tta="none") -> Tensor:
    """Logits for every image of a uint8 split, in order (float32 on CPU)."""
    model.eval()
    out = []
    for idx in batches(len(x), batch_size):
        xb = normalize(x[idx].to(device, non_blocking=True), dataset)
        with autocast() if autocast else torch.autocast(device_type=torch.device(device).type, enabled=False):
            out.append(forward_tta(model, xb, tta).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def count_hits(model: nn.Module, x: Tensor, y: Tensor, dataset: str, batch_size: int, device, autocast=None,
               tta: str = "none") -> dict:  # fmt: skip
    """Top-1 / top-5 hit counts and the image count: sums of these combine exactly across processes."""
    hits = topk_correct(predict(model, x, dataset, batch_size, device, autocast, tta), y.cpu())
    return {"top1": hits[1], "top5": hits[5], "n": len(y)}


def as_percent(counts: dict) -> dict:
    n = max(counts["n"], 1)
    return {"top1": 100.0 * counts["top1"] / n, "top5": 100.0 * counts["top5"] / n}


def evaluate(model: nn.Module, x: Tensor, y: Tensor, dataset: str, batch_size: int, device, autocast=None) -> dict:
    """top-1 / top-5 accuracy in percent."""
    return as_percent(count_hits(model, x, y, dataset, batch_size, device, autocast))
