"""Fused SDPA against explicit softmax(QK^T)V at the two attention shapes of a TITN block, forward + backward.

    python benchmarks/attention_kernels.py                  # titn-tiny on CIFAR, batch 128

Why it exists: the inner transformer attends over a handful of words per patch, batched over every patch of every
image. There the fused kernel's per-problem overhead dominates, and the model switches to the explicit form up to
`titn_core.model.CPU_EXPLICIT_ATTENTION_MAX_TOKENS` tokens on CPU. This script is the measurement behind that
threshold: it prints milliseconds and writes
results/benchmarks/attention-kernels-<device>-<preset>-<dtype>-<machine>.json for
the book's efficiency chapter; it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from titn_core import benchmark_records  # noqa: E402
from titn_core.profiles import model_preset  # noqa: E402


def best_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def fused(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def explicit(q, k, v):
    return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1) @ v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="titn-tiny")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args(argv)
    dtype = getattr(torch, args.dtype)

    cfg = model_preset(args.preset, args.image_size)
    patches = (args.image_size // cfg.patch_size) ** 2
    words = (cfg.patch_size // cfg.word_size) ** 2
    shapes = {
        "inner (words of every patch)": (args.batch_size * patches, cfg.inner_heads, words, cfg.inner_dim),
        "outer (patches + class token)": (args.batch_size, cfg.outer_heads, patches + 1, cfg.outer_dim),
    }
    print(f"{torch.get_num_threads()} threads, {args.dtype}; forward + backward, best of {args.repeats}")
    print(f"{'attention':32s} {'(batch, heads, tokens, head dim)':>34s} {'SDPA ms':>9s} {'explicit ms':>12s}")
    rows = []
    for name, (b, h, n, width) in shapes.items():
        d = width // h
        q, k, v = (torch.randn(b, h, n, d, dtype=dtype, requires_grad=True) for _ in range(3))
        grad = torch.randn(b, h, n, d, dtype=dtype)

        sdpa_ms = best_ms(lambda q=q, k=k, v=v, g=grad: fused(q, k, v).backward(g), args.repeats)
        explicit_ms = best_ms(lambda q=q, k=k, v=v, g=grad: explicit(q, k, v).backward(g), args.repeats)
        print(f"{name:32s} {str((b, h, n, d)):>34s} {sdpa_ms:9.1f} {explicit_ms:12.1f}")
        rows.append({"attention": name, "shape": [b, h, n, d], "sdpa_ms": sdpa_ms, "explicit_ms": explicit_ms})
    record = {
        "preset": args.preset,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "rows": rows,
    }
    stem = f"attention-kernels-cpu-{args.preset}-{args.dtype}"
    out = benchmark_records.save(record, args.out, stem, Path(__file__).name, argv)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
