import pytest
import torch

from titn_core import model as model_module
from titn_core.complexity import count_flops, count_params
from titn_core.config import ModelConfig
from titn_core.model import TITN


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


@pytest.mark.parametrize("amp", [False, True])
def test_cpu_short_sequence_attention_matches_sdpa_in_value_and_gradient(monkeypatch, amp):
    """The explicit CPU path for short sequences is a speed choice only: same outputs and gradients as SDPA."""
    torch.manual_seed(0)
    model = TITN(tiny(), img_size=16, in_chans=3, num_classes=5)
    x = torch.randn(4, 3, 16, 16)

    def output_and_grads():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x).float()
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    explicit_out, explicit_grads = output_and_grads()
    monkeypatch.setattr(model_module, "CPU_EXPLICIT_ATTENTION_MAX_TOKENS", 0)
    sdpa_out, sdpa_grads = output_and_grads()
    tol = dict(rtol=5e-2, atol=5e-2) if amp else dict(rtol=1e-4, atol=1e-5)
    assert torch.allclose(explicit_out, sdpa_out, **tol)
    for a, b in zip(explicit_grads, sdpa_grads, strict=True):
        assert torch.allclose(a, b, **tol)


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
