import torch
import torch.nn.functional as F
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func

from titn_core.eager_gelu import GELU


def test_compiled_gelu_graphs_call_the_custom_operators_in_both_directions():
    """Under torch.compile on CPU the forward and backward graphs call the custom operators, not aten's GELU (which
    inductor would lower into a generated kernel); run as captured, they give eager F.gelu's values and gradients."""
    torch._dynamo.reset()
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


def test_inductor_calls_the_custom_operator_instead_of_generating_a_gelu():
    """What the speed comes from: inductor's generated code calls titn::gelu (and titn::gelu_backward) and contains
    no erf of its own; its bf16 values and gradients are eager F.gelu's bit for bit."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    torch.manual_seed(0)
    x = torch.randn(256, 64, dtype=torch.bfloat16, requires_grad=True)
    compiled = torch.compile(GELU())

    def forward_and_backward():
        out = compiled(x)
        out.backward(torch.ones_like(out))
        return out

    try:
        out, code = run_and_get_code(forward_and_backward)
    finally:
        torch._dynamo.reset()
    x_grad, x.grad = x.grad, None
    F.gelu(x).backward(torch.ones_like(x))
    source = "\n".join(code)
    assert "torch.ops.titn.gelu.default" in source and "torch.ops.titn.gelu_backward.default" in source
    assert "erf(" not in source, "inductor generated a GELU of its own (std::erf or Vectorized::erf)"
    assert torch.equal(out, F.gelu(x.detach())) and torch.equal(x_grad, x.grad)
