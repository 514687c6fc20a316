import pytest
import torch

from titn_core import model as model_module
from titn_core.complexity import block_work, count_flops, count_params
from titn_core.config import ModelConfig
from titn_core.model import TITN, few_token_attention
from titn_core.profiles import model_preset


def tiny(**kw) -> ModelConfig:
    base = dict(patch_size=4, word_size=2, outer_dim=16, inner_dim=8, depth=2, outer_heads=2, inner_heads=2)
    return ModelConfig(**{**base, **kw})


def expected_params(cfg: ModelConfig, img: int, chans: int, classes: int) -> int:
    """Count TITN's parameters from its definition, independently of the module tree."""
    d, c = cfg.outer_dim, cfg.inner_dim
    n, m = (img // cfg.patch_size) ** 2, (cfg.patch_size // cfg.word_size) ** 2
    prefix = 2 if cfg.distill_token else 1

    def layer(dim):  # pre-norm transformer layer: 2 LN, qkv, proj, 2-layer MLP
        h = int(dim * cfg.mlp_ratio)
        return 4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (dim * h + h) + (h * dim + dim)

    inner = layer(c) + 2 * m * c + (m * c * d + d) if cfg.inner else 0
    embed = chans * cfg.word_size**2 * c + c + m * c + 2 * m * c + (m * c * d + d) + 2 * d
    tokens = prefix * d + (prefix + n) * d
    heads = prefix * (d * classes + classes)
    return embed + tokens + cfg.depth * (layer(d) + inner) + 2 * d + heads


@pytest.mark.parametrize("kw", [{}, {"inner": False}, {"distill_token": True}, {"word_size": 1}])
def test_shapes_and_parameter_count(kw):
    cfg = tiny(**kw)
    model = TITN(cfg, img_size=32, in_chans=3, num_classes=10)
    x = torch.randn(3, 3, 32, 32)
    feats = model.forward_features(x, keep_hidden=True)
    prefix = 2 if cfg.distill_token else 1
    assert feats.tokens.shape == (3, prefix + 64, 16)
    assert len(feats.hidden) == cfg.depth
    cls, dist = model.forward_head(feats.tokens)
    assert cls.shape == (3, 10)
    assert (dist is not None) == cfg.distill_token
    assert model(x).shape == (3, 10)
    assert count_params(model) == expected_params(cfg, 32, 3, 10)


def test_grayscale_28px_grid():
    model = TITN(tiny(patch_size=7, word_size=1), img_size=28, in_chans=1, num_classes=10)
    assert (model.grid, model.num_words) == (4, 49)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_words_are_the_pixels_of_their_patch():
    """Word embedding must group exactly the pixels of each patch, in row-major patch order."""
    model = TITN(tiny(word_size=1, inner_dim=8), img_size=8, in_chans=1, num_classes=2)
    with torch.no_grad():
        model.word_embed.weight.fill_(1.0)
        model.word_embed.bias.zero_()
        model.word_pos.zero_()
    img = torch.arange(64.0).reshape(1, 1, 8, 8)
    words = model.embed_words(img)[:, :, 0]  # (4 patches, 16 words)
    assert words[1].tolist() == img[0, 0, 0:4, 4:8].flatten().tolist()  # top-right patch
    assert words[2].tolist() == img[0, 0, 4:8, 0:4].flatten().tolist()  # bottom-left patch


def test_attention_maps_are_distributions_and_match_fused_path(monkeypatch):
    torch.manual_seed(0)
    model = TITN(tiny(), img_size=16, in_chans=3, num_classes=5).eval()
    x = torch.randn(2, 3, 16, 16)
    feats = model.forward_features(x, keep_attention=True)
    assert len(feats.inner_attn) == len(feats.outer_attn) == 2
    for a in feats.inner_attn + feats.outer_attn:
        assert torch.allclose(a.sum(-1), torch.ones(a.shape[:-1]), atol=1e-5)
        assert (a >= 0).all()
    assert feats.outer_attn[0].shape == (2, 2, 17, 17)
    assert feats.inner_attn[0].shape == (2 * 16, 2, 4, 4)
    monkeypatch.setattr(model_module, "CPU_EXPLICIT_ATTENTION_MAX_TOKENS", 0)  # force SDPA on CPU
    fused = model.forward_features(x).tokens
    assert torch.allclose(fused, feats.tokens, atol=1e-5)


def peaked(model: TITN) -> TITN:
    """Random weights large enough that attention is far from uniform (at init it is nearly uniform, and a wrong
    softmax axis or scale would pass unnoticed)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for mod in model.modules():
            for name, p in mod.named_parameters(recurse=False):
                p.normal_(1.0 if isinstance(mod, torch.nn.LayerNorm) and name == "weight" else 0.0, 0.3)
    return model


def output_and_grads(model: TITN, x: torch.Tensor, amp: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The model's logits and every parameter's gradient of a fixed loss of them."""
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = model(x).float()
    out.square().sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


def assert_same_function(a, b, amp: bool) -> None:
    """Two (logits, gradients) pairs agree within the precision's tolerance, relative to each tensor's largest entry:
    fp32 1e-5; bf16 autocast 8e-2 (bf16's own error against fp32 reaches 4.5% on these peaked weights; a softmax
    over the wrong axis is off by 15% in the logits alone)."""
    tol = 8e-2 if amp else 1e-5
    for x, y in zip([a[0], *a[1]], [b[0], *b[1]], strict=True):
        assert (x - y).abs().max() <= tol * y.abs().max()


@pytest.mark.parametrize("amp", [False, True])
def test_cpu_short_sequence_attention_matches_sdpa_in_value_and_gradient(monkeypatch, amp):
    """The explicit CPU path for short sequences is a speed choice only: same outputs and gradients as SDPA."""
    torch.manual_seed(0)
    model = peaked(TITN(tiny(), img_size=16, in_chans=3, num_classes=5))
    x = torch.randn(4, 3, 16, 16)
    explicit = output_and_grads(model, x, amp)
    monkeypatch.setattr(model_module, "CPU_EXPLICIT_ATTENTION_MAX_TOKENS", 0)
    assert_same_function(output_and_grads(model, x, amp), explicit, amp)


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("word_size", [2, 1])  # 4 and 16 words per patch
def test_few_token_attention_matches_the_reference_in_value_and_gradient(monkeypatch, amp, word_size):
    """The compiled path's inner attention (broadcast products) computes the reference's function. Run eagerly
    here by pretending to compile; the compiled model itself is checked in the next test. The threshold is raised
    so that 16 words take the path too: it picks where the form pays, the function is the same at any length."""
    monkeypatch.setattr(model_module, "FEW_TOKEN_ATTENTION_MAX_TOKENS", 16)
    torch.manual_seed(0)
    model = peaked(TITN(tiny(word_size=word_size), img_size=16, in_chans=3, num_classes=5))
    x = torch.randn(4, 3, 16, 16)
    reference = output_and_grads(model, x, amp)
    calls = []
    monkeypatch.setattr(model_module, "compiling", lambda: True)
    monkeypatch.setattr(model_module, "few_token_attention", lambda *a: calls.append(1) or few_token_attention(*a))
    assert_same_function(output_and_grads(model, x, amp), reference, amp)
    assert len(calls) == tiny().depth, "every inner attention, and only those, takes the few-token path"
    model.use_reference_attention()
    output_and_grads(model, x, amp)
    assert len(calls) == tiny().depth, "use_reference_attention turns the few-token path off"


def test_regional_compile_matches_eager_and_keeps_checkpoint_keys():
    """model.compile() (what --compile does) compiles the blocks in place, one graph shared by all of them, and
    computes the eager reference's function; the state_dict, hence every existing checkpoint, is unchanged."""
    torch.manual_seed(0)
    model = peaked(TITN(tiny(depth=3), img_size=16, in_chans=3, num_classes=5))
    x = torch.randn(4, 3, 16, 16)
    keys = list(model.state_dict())
    reference = output_and_grads(model, x, amp=False)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counts of graphs compiled by earlier tests
    model.compile()
    assert_same_function(output_and_grads(model, x, amp=False), reference, amp=False)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1, "the blocks should share one graph"
    assert list(model.state_dict()) == keys
    model.load_state_dict(TITN(tiny(depth=3), img_size=16, in_chans=3, num_classes=5).state_dict())
    torch._dynamo.reset()


def test_vit_baseline_has_no_inner_transformer_and_fewer_flops():
    titn = TITN(tiny(), 32, 3, 10)
    vit = TITN(tiny(inner=False), 32, 3, 10)
    assert all(b.inner is None for b in vit.blocks)
    assert count_flops(vit, (32, 3, 10)) < count_flops(titn, (32, 3, 10))


def test_flop_counter_counts_a_linear_layer_exactly():
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 4 * 4, 7, bias=False)

        def forward(self, x):
            return self.fc(x.flatten(1))

    assert count_flops(Flat(), (4, 3, 7)) == 2 * 48 * 7


def test_block_work_counts_each_transformers_matmul_flops_and_values_per_image():
    """Checked against the products written out for TITN-tiny on 32px images: N=64 patches of m=4 words, c=32,
    d=128, MLP ratio r=4, T=65 outer tokens (class token included)."""
    N, m, c, d, r, T = 64, 4, 32, 128, 4, 65
    work = block_work(TITN(model_preset("titn-tiny", 32), 32, 3, 10), (32, 3, 10))
    layer = 4 + 2 * r  # qkv + projection + the MLP's two products, in units of width^2
    inner_macs = N * m * layer * c * c + 2 * N * m * m * c + N * m * c * d  # + attention + words into the patch
    outer_macs = T * layer * d * d + 2 * T * T * d
    assert work["inner"] == {"flops": 2 * inner_macs, "mlp_values": N * m * c * r}
    assert work["outer"] == {"flops": 2 * outer_macs, "mlp_values": T * d * r}
