"""Parameter and FLOP counts, measured by running the model rather than written by hand."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, image_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs for one image (2 per multiply-add; halve for the "MACs" many papers call FLOPs).

    torch's FlopCounterMode counts matmuls, convolutions and attention; norms and activations are not counted,
    as in fvcore/timm conventions.
    """
    size, chans, _ = image_shape
    was_training = model.training
    model.eval()
    x = torch.zeros(1, chans, size, size, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def training_pflops(forward_flops_per_image: float, images: float) -> float:
    """PFLOPs of training on `images` (images per epoch x epochs): forward FLOPs x 3 for forward + backward, the
    convention of airbench's PFLOPs, which the teacher tables and the teacher benchmark compare against."""
    return 3 * forward_flops_per_image * images / 1e15
