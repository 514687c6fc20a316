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
    return int(_counted_forward(model, image_shape).get_total_flops())


def _counted_forward(model: nn.Module, image_shape: tuple[int, int, int]) -> FlopCounterMode:
    """One image through the model in eval mode under a FLOP counter (the model's mode is restored)."""
    size, chans, _ = image_shape
    was_training = model.training
    model.eval()
    x = torch.zeros(1, chans, size, size, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return counter


def training_pflops(forward_flops_per_image: float, images: float) -> float:
    """PFLOPs of training on `images` (images per epoch x epochs): forward FLOPs x 3 for forward + backward, the
    convention of airbench's PFLOPs, which the teacher tables and the teacher benchmark compare against."""
    return 3 * forward_flops_per_image * images / 1e15


def block_work(model: nn.Module, image_shape: tuple[int, int, int]) -> dict[str, dict[str, int]]:
    """Per image, the first block's inner and outer transformer work: forward matmul FLOPs (the inner's including
    its projection into the patch tokens) and the values its MLP's GELU produces.

    Why both: matmul time scales with FLOPs, but norms, GELU, softmax, residuals and casts cost per value. With
    m words of c channels per patch and m*c = d, the inner transformer has a quarter of the outer's FLOPs per block
    at m = 4 and as many values, so a TITN step costs more than its FLOPs say (the efficiency chapter).
    """
    block = model.blocks[0]
    parts = {"inner": [block.inner, block.words_to_patch], "outer": [block.outer]}
    hidden: dict[str, int] = {}

    def count_values(name: str):
        return lambda module, inputs, output: hidden.__setitem__(name, output.numel())

    hooks = [part[0].mlp[1].register_forward_hook(count_values(name)) for name, part in parts.items()]
    try:
        counts = _counted_forward(model, image_shape).get_flop_counts()
    finally:
        for hook in hooks:
            hook.remove()
    return {
        name: {"flops": sum(sum(counts.get(_module_name(model, mod), {}).values()) for mod in mods),
               "mlp_values": hidden[name]}
        for name, mods in parts.items()
    }  # fmt: skip


def _module_name(model: nn.Module, module: nn.Module) -> str:
    """The name FlopCounterMode files a submodule's FLOPs under: the root's class name, then its dotted path."""
    path = next(name for name, mod in model.named_modules() if mod is module)
    return f"{type(model).__name__}.{path}"
