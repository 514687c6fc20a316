import torch
import torch.nn.functional as F
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func

from titn_core.eager_gelu import GELU


def test_compiled_gelu_is_pytorchs_kernel_in_both_directions():
    """Under torch.compile on CPU the forward and backward graphs call the custom operators, not a generated GELU,
    and the values and gradients are eager F.gelu's bit for bit (bf16, where inductor's own kernel rounds apart)."""
    graphs = []

    def capture(gm, _inputs):
        graphs.append({str(node.target) for node in gm.graph.nodes})
        return make_boxed_func(gm.forward)

    torch.manual_seed(0)
    x = torch.randn(256, 64, dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn_like(x)
    compiled = torch.compile(GELU(), backend=aot_autograd(fw_compiler=capture, bw_compiler=capture))
    out = compiled(x)
    out.backward(grad)
    x_grad, x.grad = x.grad, None
    reference = F.gelu(x)
    reference.backward(grad)

    forward, backward = graphs
    assert "titn.gelu.default" in forward and "aten.gelu.default" not in forward
    assert "titn.gelu_backward.default" in backward and "aten.gelu_backward.default" not in backward
    assert torch.equal(out, reference) and torch.equal(x_grad, x.grad)
    torch._dynamo.reset()


def test_eager_gelu_is_nn_gelu():
    """Outside compilation the module is F.gelu itself (no custom-operator dispatch on the eager path)."""
    x = torch.randn(8, 16)
    assert torch.equal(GELU()(x), torch.nn.GELU()(x))
