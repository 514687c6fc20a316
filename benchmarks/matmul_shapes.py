"""How fast this machine runs each linear layer of a TITN block, at the shapes a training step gives it.

    python benchmarks/matmul_shapes.py --amp     # titn-tiny on CIFAR, batch 128, bf16 (the cpu profile)
    python benchmarks/matmul_shapes.py           # the same in fp32

Why it exists: the step profile counts our TITN's matmul time, and the efficiency chapter's estimate assumed the
inner transformer's matmuls run at the outer's time per FLOP. They need not: the inner layers multiply many short
rows (every word of every patch, 32 channels in titn-tiny) by small weights, so they do fewer FLOPs per byte they
read and write than the outer layers. This script measures their rates directly: for each linear layer of one block (the
blocks share their shapes) it times the three products of a training step, forward (x W^T), input gradient (g W)
and weight gradient (g^T x), on random data of that layer's shape, and reports GFLOP/s; the summary is the inner
layers' FLOP-weighted rate (with the projection of the words into their patch token) over the outer's. Writes
results/benchmarks/matmul-shapes-<device>-<preset>-b<batch>[-bf16]-<machine>.json (`--out` elsewhere).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from titn_core import benchmark_records, hardware  # noqa: E402
from titn_core.benchmark_tables import MATMUL_PRODUCTS  # noqa: E402
from titn_core.model import build_titn  # noqa: E402
from titn_core.profiles import MODEL_PRESETS, model_preset  # noqa: E402


def block_linear_shapes(preset: str, batch: int) -> dict[str, tuple[int, int, int]]:
    """Layer name (within block 0) -> (rows M, in features K, out features N) of its product, read from one
    forward pass of the model, so the shapes are the model's, not typed in."""
    model = build_titn(model_preset(preset, 32), 32, 3, 10)
    shapes, hooks = {}, []

    def record(name: str, layer: nn.Linear, inputs: tuple) -> None:  # returns None: the output stays the layer's
        shapes.setdefault(name, (inputs[0].numel() // layer.in_features, layer.in_features, layer.out_features))

    for name, mod in model.blocks[0].named_modules():
        if isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_pre_hook(lambda layer, inputs, name=name: record(name, layer, inputs)))
    with torch.no_grad():
        model(torch.randn(batch, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    return shapes


def time_products(m: int, k: int, n: int, dtype: torch.dtype, repeats: int) -> dict[str, float]:
    """Median seconds of each of a linear layer's three training-step products, in the layouts autograd uses."""
    own = torch.Generator().manual_seed(0)
    x, w, g = (torch.randn(*shape, dtype=dtype, generator=own) for shape in ((m, k), (n, k), (m, n)))
    products = {"forward": lambda: x @ w.t(), "input grad": lambda: g @ w, "weight grad": lambda: g.t() @ x}
    seconds = {}
    for name, product in products.items():
        product()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
    return seconds


def measure(shapes: dict, dtype: torch.dtype, repeats: int) -> dict[str, dict]:
    """Per layer: its shape, FLOPs per product, and each product's ms and GFLOP/s."""
    rows = {}
    for name, (m, k, n) in shapes.items():
        flops = 2 * m * k * n
        seconds = time_products(m, k, n, dtype, repeats)
        rows[name] = {"rows": m, "in": k, "out": n, "flops": flops,
                      **{f"{p} ms": 1e3 * s for p, s in seconds.items()},
                      **{f"{p} GFLOP/s": flops / s / 1e9 for p, s in seconds.items()}}  # fmt: skip
    return rows


def is_inner(layer: str) -> bool:
    """The inner transformer's layers, and the projection of its words into their patch token: the work a plain ViT
    of the same width does not do (as `complexity.block_work` counts it)."""
    return layer.startswith("inner.") or layer == "words_to_patch"


def level_rate(rows: dict, inner: bool) -> float:
    """FLOP-weighted GFLOP/s over every product of the inner (or the outer) transformer's layers."""
    chosen = [row for name, row in rows.items() if is_inner(name) == inner]
    flops = sum(3 * row["flops"] for row in chosen)
    seconds = sum(row[f"{p} ms"] / 1e3 for row in chosen for p in MATMUL_PRODUCTS)
    return flops / seconds / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="titn-tiny", choices=[m for m in MODEL_PRESETS if m.startswith("titn")])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=21, help="timed repeats per product; the median counts")
    p.add_argument("--amp", action="store_true", help="bf16 operands (the products bf16 autocast runs)")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args(argv)

    dtype = torch.bfloat16 if args.amp else torch.float32
    rows = measure(block_linear_shapes(args.preset, args.batch_size), dtype, args.repeats)
    for name, row in rows.items():
        rates = "  ".join(f"{p} {row[f'{p} GFLOP/s']:6.0f}" for p in MATMUL_PRODUCTS)
        print(f"{name:22s} M={row['rows']:6d} K={row['in']:4d} N={row['out']:4d}  GFLOP/s: {rates}")
    ratio = level_rate(rows, inner=True) / level_rate(rows, inner=False)
    print(f"inner layers' GFLOP/s (words_to_patch included) over the outer's, FLOP-weighted, all products: {ratio:.2f}")
    record = {
        "preset": args.preset,
        "input": [args.batch_size, 3, 32, 32],
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "amp_bf16": args.amp,
        "repeats": args.repeats,
        "layers": rows,
        "ratios": {"inner_over_outer_gflops": ratio},
        "matmul_peak_flops": hardware.matmul_peak("cpu", dtype),
    }
    suffix = "-bf16" if args.amp else ""
    stem = f"matmul-shapes-cpu-{args.preset}-b{args.batch_size}{suffix}"
    out = benchmark_records.save(record, args.out, stem, Path(__file__).name, argv)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
