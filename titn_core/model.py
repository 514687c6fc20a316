"""The TITN student: a Transformer-in-Transformer (TNT, Han et al. 2021) for small images.

An image is cut into patches ("sentences"); each patch into words of `word_size` x `word_size` pixels
(`word_size=1`: pixel-level words, our reading of the paper's "pixel-level" inner attention). Every block runs an
inner transformer over the words of each patch (all patches batched together), projects the flattened words to
the patch width and adds them to that patch's token, then runs the outer transformer over the patch tokens plus
the class (and optional distillation) token. `inner=False` drops the inner transformer: a plain ViT of the same
width, the baseline the paper argues against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .eager_gelu import GELU

# On CPU, up to this many tokens, the explicit softmax(QK^T)V beats the fused SDPA kernel, whose per-problem
# overhead dominates short sequences (fwd+bwd, 2 cores, titn-tiny on CIFAR at batch 128: inner 11 vs 16 ms, outer
# 10 vs 15 ms in fp32; 11 vs 50 and 7 vs 42 ms in bf16). SDPA wins from ~250 tokens in fp32 and on CUDA always.
# `python benchmarks/attention_kernels.py [--dtype bfloat16]` measures it (results/benchmarks/attention-kernels-*).
CPU_EXPLICIT_ATTENTION_MAX_TOKENS = 128


# Under torch.compile, up to this many tokens (the inner transformer's words), attention is computed as broadcast
# products (`few_token_attention`), which inductor fuses into a few loops. Forward + backward against the compiled
# bmm form, 8192 patches x 2 heads x 16 channels, 1 thread: 4 words 0.4x (bf16; fp32 0.2x), 6 words 0.75x,
# 9 words 1.1x; 16 words x 3 heads x 8 channels 1.9x. Eager keeps the bmm form: unfused, the broadcast form
# writes every (query, key, channel) product and is 2.4x slower at 4 words.
FEW_TOKEN_ATTENTION_MAX_TOKENS = 8


def compiling() -> bool:
    """True while torch.compile traces the model: the few-token attention form pays only then (see above)."""
    return torch.compiler.is_compiling()


def few_token_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) v as broadcast products summed over channels, then over keys.

    q, k, v: (B, N, heads, d), views of the qkv projection, so no head-first copy goes in; the result,
    (B, N, heads, d), is already the layout the output projection reads, so none comes out either.
    """
    scores = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1) * q.shape[-1] ** -0.5  # (B, query, key, heads)
    return (scores.softmax(dim=2).unsqueeze(-1) * v.unsqueeze(1)).sum(2)


class Attention(nn.Module):
    """Multi-head self-attention: fused SDPA, except for short sequences on CPU (explicit is faster there, see
    above), when the attention weights are wanted, and for a few tokens under torch.compile (`few_token_attention`).
    `reference = True` turns the last off: the form the tests and benchmarks hold the compiled path to."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.reference = False

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads)
        if not (need_weights or self.reference) and N <= FEW_TOKEN_ATTENTION_MAX_TOKENS and compiling():
            return self.proj(few_token_attention(*qkv.unbind(2)).reshape(B, N, C)), None
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        if need_weights or (x.device.type == "cpu" and N <= CPU_EXPLICIT_ATTENTION_MAX_TOKENS):
            weights = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
            out = weights @ v
        else:
            weights, out = None, F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C)), (weights if need_weights else None)


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample (used by the paper-size preset)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class TransformerLayer(nn.Module):
    """Pre-norm MSA + MLP with residuals, shared by the inner and the outer transformer."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), GELU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        y, weights = self.attn(self.norm1(x), need_weights)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, weights


class TITNBlock(nn.Module):
    """Inner transformer over words -> project words into their patch token -> outer transformer over patches."""

    def __init__(self, cfg: ModelConfig, num_words: int, drop_path: float):
        super().__init__()
        self.inner = None
        if cfg.inner:
            self.inner = TransformerLayer(cfg.inner_dim, cfg.inner_heads, cfg.mlp_ratio)
            self.words_norm = nn.LayerNorm(num_words * cfg.inner_dim)
            self.words_to_patch = nn.Linear(num_words * cfg.inner_dim, cfg.outer_dim)
        self.outer = TransformerLayer(cfg.outer_dim, cfg.outer_heads, cfg.mlp_ratio, drop_path)

    def forward(self, words: Tensor, tokens: Tensor, num_prefix: int, need_weights: bool = False):
        inner_weights = None
        if self.inner is not None:
            words, inner_weights = self.inner(words, need_weights)
            B, T, _ = tokens.shape
            update = self.words_to_patch(self.words_norm(words.reshape(B, T - num_prefix, -1)))
            # class/distillation tokens get no update; one concatenation, no zero-padded copy of the update
            tokens = torch.cat([tokens[:, :num_prefix], tokens[:, num_prefix:] + update], dim=1)
        tokens, outer_weights = self.outer(tokens, need_weights)
        return words, tokens, inner_weights, outer_weights


@dataclass
class Features:
    """What `forward_features` returns: final normed tokens, optionally per-block tokens and attention maps.

    tokens: (B, prefix + N, d). hidden[i]: block i's output tokens. inner_attn[i]: (B*N, heads, m, m);
    outer_attn[i]: (B, heads, prefix + N, prefix + N).
    """

    tokens: Tensor
    hidden: list[Tensor] = field(default_factory=list)
    inner_attn: list[Tensor] = field(default_factory=list)
    outer_attn: list[Tensor] = field(default_factory=list)


class TITN(nn.Module):
    def __init__(self, cfg: ModelConfig, img_size: int, in_chans: int, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.grid = img_size // cfg.patch_size  # patches per side
        self.words_per_side = cfg.patch_size // cfg.word_size
        self.num_patches = self.grid**2
        self.num_words = self.words_per_side**2
        self.num_prefix = 2 if cfg.distill_token else 1
        c, d, m = cfg.inner_dim, cfg.outer_dim, self.num_words

        self.word_embed = nn.Conv2d(in_chans, c, kernel_size=cfg.word_size, stride=cfg.word_size)
        self.word_pos = nn.Parameter(torch.zeros(1, m, c))
        self.patch_embed = nn.Sequential(nn.LayerNorm(m * c), nn.Linear(m * c, d), nn.LayerNorm(d))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.distill_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix + self.num_patches, d))
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.ModuleList(TITNBlock(cfg, m, r) for r in rates)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_classes)
        self.head_dist = nn.Linear(d, num_classes) if cfg.distill_token else None
        self._init_weights()

    def compile(self, *args, **kwargs) -> None:
        """Regional compilation, in place: torch.compile each block, leave the embeddings and heads eager.

        The blocks share one compiled graph (same code, parameters passed as inputs), so compiling costs one block
        rather than the whole model (on 2 busy cores ~1.5 instead of ~2.3 min), and parameter names, hence
        checkpoints, stay those of the eager model. `trainer` calls this for `cfg.compile`.
        """
        for block in self.blocks:
            block.compile(*args, **kwargs)

    def use_reference_attention(self, reference: bool = True) -> TITN:
        """Compute attention as before the few-token form, also when compiled: the reference for tests and
        `benchmarks/throughput.py --reference`. Eager results are the same either way."""
        for mod in self.modules():
            if isinstance(mod, Attention):
                mod.reference = reference
        return self

    def _init_weights(self) -> None:
        for p in (self.word_pos, self.cls_token, self.dist_token, self.pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)

    def embed_words(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B*N, m, c): every patch's words, patches stacked into the batch dimension."""
        B, g, s = x.shape[0], self.grid, self.words_per_side
        w = self.word_embed(x)  # (B, c, g*s, g*s)
        w = w.reshape(B, -1, g, s, g, s).permute(0, 2, 4, 3, 5, 1).reshape(B * g * g, s * s, -1)
        return w + self.word_pos

    def forward_features(self, x: Tensor, keep_hidden: bool = False, keep_attention: bool = False) -> Features:
        B = x.shape[0]
        words = self.embed_words(x)
        patches = self.patch_embed(words.reshape(B, self.num_patches, -1))
        prefix = [self.cls_token.expand(B, -1, -1)]
        if self.dist_token is not None:
            prefix.append(self.dist_token.expand(B, -1, -1))
        tokens = torch.cat(prefix + [patches], dim=1) + self.pos_embed
        out = Features(tokens)
        for block in self.blocks:
            words, tokens, inner_w, outer_w = block(words, tokens, self.num_prefix, keep_attention)
            if keep_hidden:
                out.hidden.append(tokens)
            if keep_attention:
                out.outer_attn.append(outer_w)
                if inner_w is not None:
                    out.inner_attn.append(inner_w)
        out.tokens = self.norm(tokens)
        return out

    def forward_head(self, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """(class-token logits, distillation-token logits or None)."""
        dist = self.head_dist(tokens[:, 1]) if self.head_dist is not None else None
        return self.head(tokens[:, 0]), dist

    def forward(self, x: Tensor) -> Tensor:
        """Inference logits. With a distillation token the two heads are averaged, as in DeiT's code."""
        cls, dist = self.forward_head(self.forward_features(x).tokens)
        return cls if dist is None else (cls + dist) / 2


def build_titn(cfg: ModelConfig, img_size: int, in_chans: int, num_classes: int) -> TITN:
    return TITN(cfg, img_size, in_chans, num_classes)
