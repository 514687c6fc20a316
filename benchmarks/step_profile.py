"""Where a training step's time goes: torch.profiler's self time per operator, grouped into a few kinds of work.

    python benchmarks/step_profile.py --amp          # titn-tiny on CIFAR, batch 128, bf16 autocast (the cpu profile)
    python benchmarks/step_profile.py                # the same in fp32

Why it exists: the throughput benchmark says how fast each model trains and what fraction of the matmul peak it
reaches; this says why not more. Each model of `throughput.py` (ours, our ViT, timm's TNT) runs a few training
steps under the profiler; operator self times are summed into matmul, casts and layout copies, layer norm,
activations and softmax, other elementwise work and the optimiser. With `--compile` (every model compiled in place
by `model.compile()`, as `throughput.py --compile` does) the kernels inductor generated are profiled too and count
as "fused kernels (compiled)". Writes
results/benchmarks/step-profile-<device>-<preset>-b<batch>[-bf16][-compile]-<machine>.json
for the book's efficiency chapter (`--out` elsewhere). After profiling, the models' unprofiled training steps are
timed in turns, so the record also says how their step times compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import SETUPS, Runner, peers, timed  # noqa: E402

from titn_core import benchmark_records  # noqa: E402
from titn_core.profiles import MODEL_PRESETS, model_preset  # noqa: E402
from titn_core.trainer import pick_device  # noqa: E402

# operator name (without "aten::") -> kind of work; anything not listed counts as "other elementwise"
KINDS = {
    "matmul and convolution": {"mm", "bmm", "addmm", "baddbmm", "mkldnn_convolution", "convolution_backward"},
    "casts and layout copies": {"copy_", "_to_copy", "clone", "cat", "contiguous", "_unsafe_view"},
    "layer norm": {"native_layer_norm", "native_layer_norm_backward"},
    "activation and softmax": {"gelu", "gelu_backward", "_softmax", "_softmax_backward_data"},
    "optimiser": {"_fused_adamw_"},
}
OTHER = "other elementwise and reductions"
FUSED = "fused kernels (compiled)"  # inductor's generated C++ kernels: layer norm, activations, casts... fused


def kind_of(op: str) -> str | None:
    """The kind of an aten operator or compiled kernel; None for wrappers (autograd nodes, optimiser step) that
    have no own work."""
    if "cpp_fused" in op:
        return FUSED
    if not op.startswith("aten::"):
        return None
    name = op.removeprefix("aten::")
    return next((kind for kind, ops in KINDS.items() if name in ops), OTHER)


def profile_steps(runner: Runner, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict:
    """Self milliseconds per kind for `steps` training steps, plus the wall time of those steps."""
    for _ in range(2):
        runner.train_step(x, y)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            runner.train_step(x, y)
        wall = time.perf_counter() - start
    per_kind = dict.fromkeys([*KINDS, OTHER, FUSED] if runner.compiled else [*KINDS, OTHER], 0.0)
    for event in prof.key_averages():
        kind = kind_of(event.key)
        if kind:
            per_kind[kind] += event.self_cpu_time_total / 1e3 / steps
    return {"ms_per_step": per_kind, "profiled_wall_ms_per_step": 1e3 * wall / steps}


def timed_steps(runners: dict[str, Runner], x: torch.Tensor, y: torch.Tensor, steps: int, rounds: int) -> dict:
    """Milliseconds per training step without the profiler, the models timed in turns (median round), as
    `throughput.py` does: the profiler's overhead differs between models, so their step times are compared here,
    within this record, rather than from the profiled time."""
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            times[name].append(timed(lambda r=runner: r.train_step(x, y), x.device, steps))
    return {name: 1e3 * statistics.median(t) / steps for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="titn-tiny", choices=[m for m in MODEL_PRESETS if m.startswith("titn")])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="profiled steps, and timed steps per round")
    p.add_argument("--rounds", type=int, default=5, help="round-robin rounds of unprofiled timing")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (the cpu profile trains so)")
    p.add_argument("--compile", action="store_true", help="model.compile() every model (ours: regional, per block)")
    p.add_argument("--only", nargs="*", help="substrings of model names to keep")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args(argv)

    device = pick_device("auto")
    if args.compile:
        import torch._inductor.config as inductor

        inductor.cpp.enable_kernel_profile = True  # else the fused kernels are invisible to the profiler
    torch.manual_seed(0)
    cfg = model_preset(args.preset, 32)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    builders = {k: v for k, v in peers(cfg, 32, 3, 10).items() if k != "transformer-in-transformer"}  # cannot train
    if args.only:
        builders = {k: v for k, v in builders.items() if any(s.lower() in k.lower() for s in args.only)}

    models, runners = {}, {}
    for name, build in builders.items():
        runners[name] = Runner(build(), device, "model.compile()" if args.compile else "eager", args.amp)
        models[name] = profile_steps(runners[name], x, y, args.steps)
        kinds = models[name]["ms_per_step"]
        total = sum(kinds.values())
        shares = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in kinds.items())
        print(f"{name}: {total:.0f} ms of operator time per step ({shares})")
    for name, ms in timed_steps(runners, x, y, args.steps, args.rounds).items():
        models[name]["train_ms_per_step"] = ms
        print(f"{name}: {ms:.0f} ms per training step, unprofiled (median of {args.rounds} rounds)")
    record = {
        "preset": args.preset,
        "input": [args.batch_size, 3, 32, 32],
        "device": str(device),
        "threads": torch.get_num_threads(),
        "amp_bf16": args.amp,
        "compile_mode": SETUPS["model.compile()" if args.compile else "eager"],
        "steps": args.steps,
        "rounds": args.rounds,
        "kinds": {k: sorted(v) for k, v in KINDS.items()},
        "models": models,
    }
    suffix = ("-bf16" if args.amp else "") + ("-compile" if args.compile else "")
    stem = f"step-profile-{device.type}-{args.preset}-b{args.batch_size}{suffix}"
    out = benchmark_records.save(record, args.out, stem, Path(__file__).name, argv, device)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
