"""GELU that torch.compile calls as PyTorch's own kernel instead of generating one.

Why: on CPU, eager `F.gelu` and its backward on bf16 run oneDNN's JIT kernels where the CPU computes bf16 natively
(ATen's own vectorised loop elsewhere); inductor instead writes its own loop around a polynomial erf. On a 2-core
AMX Xeon, 4M bf16 values took 0.9 ms eager against 2.0-2.7 ms compiled forward, 1.9 against 5.4 ms backward (one
process, best of 20 calls). Wrapping both directions in custom operators makes inductor call them as opaque
kernels; the values are eager PyTorch's, bit for bit. The price is the fusion inductor gave up around them, small
next to that (`python benchmarks/throughput.py --compile` measures the whole).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.library.custom_op("titn::gelu", mutates_args=())
def gelu(x: Tensor) -> Tensor:
    """Exact (erf) GELU, PyTorch's kernel."""
    return F.gelu(x)


@gelu.register_fake
def _(x: Tensor) -> Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("titn::gelu_backward", mutates_args=())
def gelu_backward(grad: Tensor, x: Tensor) -> Tensor:
    """d gelu(x) / dx times grad, PyTorch's kernel (an operator of its own, so inductor does not re-derive it)."""
    return torch.ops.aten.gelu_backward(grad, x)


@gelu_backward.register_fake
def _(grad: Tensor, x: Tensor) -> Tensor:
    return torch.empty_like(x)


def _save_input(ctx, inputs: tuple[Tensor], output: Tensor) -> None:
    ctx.save_for_backward(inputs[0])


def _gelu_grad(ctx, grad: Tensor) -> Tensor:
    (x,) = ctx.saved_tensors
    return gelu_backward(grad, x)


gelu.register_autograd(_gelu_grad, setup_context=_save_input)


class GELU(nn.Module):
    """nn.GELU, except that torch.compile on CPU calls the custom operator above. Eager stays plain F.gelu, and so
    does CUDA, where inductor's fused kernel is the fast one."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling() and x.device.type == "cpu":
            return gelu(x)
        return F.gelu(x)
