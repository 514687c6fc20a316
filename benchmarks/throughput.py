"""Training and inference throughput of our TITN against peer TNT implementations, in one process, same inputs.

    python benchmarks/throughput.py                      # titn-tiny shape on CIFAR-sized input, batch 128
    python benchmarks/throughput.py --preset titn-paper --batch-size 64 --compile

Peers (from PyPI, `pip install -e .[bench]`): timm's `TNT` (timm.models.tnt) and lucidrains'
`transformer-in-transformer`, built at our preset's widths, depth, heads, patch and word size; plus our plain ViT
of the same width. Per model it measures images/s for a training step (forward, backward, AdamW step) and for
inference, the memory a training step holds (activations saved for backward + parameters, gradients and AdamW
state; on CUDA the allocator's peak), and the fraction of this machine's measured matmul FLOP/s each reaches:
model FLOPs (FlopCounterMode; training = 3 x forward) x images/s / peak.

`--compile` compiles every model in place with `model.compile()`: ours per block (regional, one graph shared by
all blocks, the inner attention in its few-token form; see `titn_core.model`), the peers as a whole. `--reference`
adds our TITN as it ran before issue 21 beside it, in the same process: eager (the same code as ours, so it shows
the noise), or with `--compile` the whole model through `torch.compile(model)` with the bmm inner attention, plus
our eager TITN. The summary prints the ratios the issue asks about: our TITN's time per image over our ViT's, our
training speed over timm's TNT, over the reference, and the fraction of the matmul peak.

Models are timed in turns (round-robin, median of the rounds), so a background load affects all of them alike.
Writes results/benchmarks/throughput-<device>-<preset>-b<batch>[-bf16][-compile]-<machine>.json (`--out` elsewhere).
A script, not a test: numbers vary by machine, and on a shared machine only the ratios within one run mean much.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from titn_core import benchmark_records  # noqa: E402
from titn_core.complexity import count_flops, count_params  # noqa: E402
from titn_core.config import ModelConfig  # noqa: E402
from titn_core.hardware import matmul_peak, sync  # noqa: E402
from titn_core.model import build_titn  # noqa: E402
from titn_core.profiles import MODEL_PRESETS, model_preset  # noqa: E402
from titn_core.trainer import pick_device  # noqa: E402


def peers(cfg: ModelConfig, img: int, chans: int, classes: int) -> dict[str, Callable[[], nn.Module]]:
    """Constructors of every model compared, at the same widths, depth, heads, patch and word size."""
    vit = dataclasses.replace(cfg, inner=False, preset=cfg.preset.replace("titn", "vit"))
    models = {
        "ours TITN": lambda: build_titn(cfg, img, chans, classes),
        "ours ViT (no inner)": lambda: build_titn(vit, img, chans, classes),
    }
    try:
        from timm.models.tnt import TNT as TimmTNT

        models["timm TNT"] = lambda: TimmTNT(
            img_size=img, patch_size=cfg.patch_size, in_chans=chans, num_classes=classes, embed_dim=cfg.outer_dim,
            inner_dim=cfg.inner_dim, depth=cfg.depth, num_heads_inner=cfg.inner_heads,
            num_heads_outer=cfg.outer_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True, first_stride=cfg.word_size,
        )  # fmt: skip
    except ImportError:
        print("timm not installed (pip install -e .[bench]); skipping timm TNT", file=sys.stderr)
    try:
        from transformer_in_transformer import TNT as LucidTNT

        # one `heads`/`dim_head` for both levels: outer attention matches ours (heads x dim_head = outer_dim);
        # its inner attention is then wider than ours, which the FLOP column shows
        models["transformer-in-transformer"] = lambda: LucidTNT(
            image_size=img, patch_dim=cfg.outer_dim, pixel_dim=cfg.inner_dim, patch_size=cfg.patch_size,
            pixel_size=cfg.word_size, depth=cfg.depth, num_classes=classes, channels=chans, heads=cfg.outer_heads,
            dim_head=cfg.outer_dim // cfg.outer_heads,
        )  # fmt: skip
    except ImportError:
        print("transformer-in-transformer not installed; skipping it", file=sys.stderr)
    return models


OURS, VIT, TIMM, REFERENCE = "ours TITN", "ours ViT (no inner)", "timm TNT", "ours TITN (reference)"
SETUPS = {  # how a Runner runs a model, as the records name it
    "eager": "eager",
    "model.compile()": "model.compile() in place (ours: each block, few-token inner attention; peers: whole model)",
    "torch.compile(model)": "torch.compile(model), whole model; ours with the reference (bmm) inner attention",
}


class Runner:
    """One model, its optimiser and a compiled or eager forward, ready for timed training and inference steps.
    `setup` is a key of SETUPS."""

    def __init__(self, model: nn.Module, device: torch.device, setup: str, amp: bool):
        self.model = model.to(device)
        self.compiled = setup != "eager"
        self.forward = torch.compile(self.model) if setup == "torch.compile(model)" else self.model
        if setup == "model.compile()":
            self.model.compile()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, fused=True)  # the same optimiser for all
        self.autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model.train()
        with self.autocast():
            loss = F.cross_entropy(self.forward(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    @torch.inference_mode()
    def infer_step(self, x: torch.Tensor) -> None:
        self.model.eval()
        with self.autocast():
            self.forward(x)


def saved_activation_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes autograd keeps for backward in one training forward (the activation memory of a step)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def train_memory(runner: Runner, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """MB a training step holds: the allocator's peak on CUDA; saved activations + optimiser state on CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        runner.train_step(x, y)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (saved_activation_bytes(runner.model, x, y) + state_bytes(runner.model)) / 2**20


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return format(value, spec) if value is not None else "fails".rjust(width)


def state_bytes(model: nn.Module) -> int:
    """Parameters + gradients + AdamW's two moments, fp32."""
    return 4 * 4 * count_params(model)


def summary_ratios(rows: dict[str, dict]) -> dict[str, float]:
    """The issue-21 ratios among the models measured: our TITN's training speed over each other model's, its
    training time per image over our ViT's, and our training step's fraction of the matmul peak."""
    speed = {name: row.get("train_images_per_s") for name, row in rows.items()}
    ratios = {}
    for name in rows:
        if name != OURS and speed.get(OURS) and speed.get(name):
            slug = name.lower().replace("(", "").replace(")", "").replace(" ", "_")
            ratios[f"titn_train_speed_over_{slug}"] = speed[OURS] / speed[name]
            if name.startswith(VIT):  # the issue's form: TITN's training time per image over ViT's
                ratios[f"titn_over_{slug}_train_time_per_image"] = speed[name] / speed[OURS]
    if rows.get(OURS, {}).get("train_peak_fraction"):
        ratios["titn_train_peak_fraction"] = rows[OURS]["train_peak_fraction"]
    return ratios


def timed(fn: Callable[[], None], device: torch.device, steps: int) -> float:
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return time.perf_counter() - t


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="titn-tiny", choices=[m for m in MODEL_PRESETS if m.startswith("titn")])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=5, help="round-robin rounds; the median round counts")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="model.compile() every model (ours: regional, per block)")
    p.add_argument("--reference", action="store_true", help="also time our TITN as before issue 21 (see above)")
    p.add_argument(
        "--amp", action="store_true", help="bf16 autocast for every model (always on CUDA); the cpu profile trains so"
    )
    p.add_argument("--only", nargs="*", help="substrings of model names to keep")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    return p.parse_args(argv)


def build_jobs(args, cfg) -> dict:
    """name -> (model builder, setup): every peer as asked, our pre-issue-21 TITN with --reference, and with
    --compile every peer eager too, for "each at its fastest" within one process."""
    builders = peers(cfg, args.image_size, args.channels, args.classes)
    if args.only:
        builders = {k: v for k, v in builders.items() if any(s.lower() in k.lower() for s in args.only)}
    setup = "model.compile()" if args.compile else "eager"
    jobs = {name: (build, setup) for name, build in builders.items()}
    if args.reference and OURS in builders:
        jobs[REFERENCE] = (
            lambda: builders[OURS]().use_reference_attention(),
            "torch.compile(model)" if args.compile else "eager",
        )
    if args.compile:
        jobs.update({f"{name} (eager)": (builders[name], "eager") for name in (OURS, VIT, TIMM) if name in builders})
    return jobs


def warm_up(jobs: dict, args, x, y, device, amp: bool) -> tuple[dict, dict]:
    """Build, warm up (compile) and size every model: (runners, rows). A peer that cannot train or infer on this
    torch is reported in its row's errors, not hidden."""
    runners, rows = {}, {}
    for name, (build, how) in jobs.items():
        model = build()
        flops = count_flops(model, (args.image_size, args.channels, args.classes))
        rows[name] = {"params": count_params(model), "forward_flops_per_image": flops, "errors": {},
                      "setup": SETUPS[how]}  # fmt: skip
        runners[name] = Runner(model, device, how, amp)
        start = time.perf_counter()
        for mode, step in (("train", lambda r=runners[name]: r.train_step(x, y)), ("infer", runners[name].infer_step)):
            try:
                step() if mode == "train" else step(x)
                step() if mode == "train" else step(x)  # warm-up (and compilation)
            except RuntimeError as e:
                rows[name]["errors"][mode] = str(e).splitlines()[0][:200]
                print(f"{name}: {mode} step fails: {rows[name]['errors'][mode]}", file=sys.stderr)
        rows[name]["warmup_s"] = time.perf_counter() - start  # with compiling, the compile time (wall)
        if "train" not in rows[name]["errors"]:
            rows[name]["train_memory_mb"] = train_memory(runners[name], x, y, device)
    return runners, rows


def time_rounds(runners: dict, rows: dict, args, x, y, device) -> None:
    """Models timed in turns, round after round (so a slow spell of a shared machine hits them all alike); each
    row gets the median round's images/s."""
    train_s = {n: [] for n in runners}
    infer_s = {n: [] for n in runners}
    for _ in range(args.rounds):
        for name, r in runners.items():
            if "train" not in rows[name]["errors"]:
                train_s[name].append(timed(lambda r=r: r.train_step(x, y), device, args.steps))
            if "infer" not in rows[name]["errors"]:
                infer_s[name].append(timed(lambda r=r: r.infer_step(x), device, args.steps))
    images = args.batch_size * args.steps
    for name, row in rows.items():
        for mode, times in (("train", train_s[name]), ("infer", infer_s[name])):
            speed = images / statistics.median(times) if times else None
            row[f"{mode}_images_per_s"] = speed


def add_peak_fractions(rows: dict, peak: float) -> None:
    """Each row's training and inference FLOP/s as a fraction of the machine's matmul peak."""
    for row in rows.values():
        for mode in ("train", "infer"):
            speed, work = row[f"{mode}_images_per_s"], (3 if mode == "train" else 1) * row["forward_flops_per_image"]
            row[f"{mode}_peak_fraction"] = work * speed / peak if speed else None


def print_table(rows: dict) -> None:
    base = rows.get(TIMM, {}).get("train_images_per_s")
    print(f"\n{'model':28s} {'params':>8s} {'MFLOP/img':>10s} {'train img/s':>12s} {'infer img/s':>12s} "
          f"{'train %peak':>11s} {'mem MB':>8s} {'vs timm':>8s}")  # fmt: skip
    for name, r in rows.items():
        speed = r["train_images_per_s"]
        print(
            f"{name:28s} {r['params'] / 1e6:7.2f}M {r['forward_flops_per_image'] / 1e6:10.1f} "
            f"{_fmt(speed, '12.1f')} {_fmt(r['infer_images_per_s'], '12.1f')} "
            f"{_fmt(r['train_peak_fraction'] and 100 * r['train_peak_fraction'], '10.1f')}% "
            f"{_fmt(r.get('train_memory_mb'), '8.0f')} {(f'{speed / base:.2f}x' if base and speed else '-'):>8s}"
        )


def write_record(args, argv, cfg, device, amp: bool, peak: float, rows: dict, ratios: dict) -> Path:
    setup = "model.compile()" if args.compile else "eager"
    record = {
        "preset": args.preset,
        "model_config": dataclasses.asdict(cfg),
        "input": [args.batch_size, args.channels, args.image_size, args.image_size],
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "compile": args.compile,
        "compile_mode": SETUPS[setup],
        "reference": args.reference,
        "ratios": ratios,
        "amp_bf16": amp,
        "steps": args.steps,
        "rounds": args.rounds,
        "matmul_peak_flops": peak,
        "matmul_peak_precision": "bf16" if amp else "fp32",
        "memory_measure": "activations saved for backward + params/grads/AdamW"
        if device.type == "cpu"
        else "CUDA max_memory_allocated",
        "models": rows,
    }
    suffix = ("-bf16" if amp and device.type == "cpu" else "") + ("-compile" if args.compile else "")
    stem = f"throughput-{device.type}-{args.preset}-b{args.batch_size}{suffix}"
    out = benchmark_records.save(record, args.out, stem, Path(__file__).name, argv, device)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    amp = args.amp or device.type == "cuda"
    torch.manual_seed(0)
    cfg = model_preset(args.preset, args.image_size)
    x = torch.randn(args.batch_size, args.channels, args.image_size, args.image_size, device=device)
    y = torch.randint(0, args.classes, (args.batch_size,), device=device)
    jobs = build_jobs(args, cfg)
    dtype = torch.bfloat16 if amp else torch.float32
    peak = matmul_peak(device, dtype)
    runners, rows = warm_up(jobs, args, x, y, device, amp)
    time_rounds(runners, rows, args, x, y, device)
    # measured again after the rounds, the best kept: a shared host's matmul speed swung 2x within the hour
    peak = max(peak, matmul_peak(device, dtype))
    print(f"device {device}, {torch.get_num_threads()} threads, matmul peak {peak / 1e9:.1f} GFLOP/s "
          f"({'bf16' if amp else 'fp32'})")  # fmt: skip
    add_peak_fractions(rows, peak)
    print_table(rows)
    ratios = summary_ratios(rows)
    for key, value in ratios.items():
        print(f"{key}: {value:.3f}")
    print(f"\nwrote {write_record(args, argv, cfg, device, amp, peak, rows, ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
