"""Training speed of a CNN teacher by precision and memory layout, and what its cpu recipe costs, in one process.

    python benchmarks/teacher_throughput.py                       # fastcnn, CIFAR-sized input, batch 1024
    python benchmarks/teacher_throughput.py --teacher fastcnn-wide --classes 100

Variants, timed in turns (round-robin, median round) so a background load hits them alike: fp32 with NCHW
weights, fp32 channels-last (what `build_teacher` returns), bf16 autocast channels-last (oneDNN's native bf16
convolution where the CPU has avx512_bf16/AMX; emulated and slow elsewhere). A training step is forward, backward
and a Nesterov SGD step, as in the fastcnn recipe. The summary prints images/s, the ratios between variants, the
fraction of the measured matmul peak, and the recipe's training PFLOPs and projected wall time at the cpu profile's
precision, so the 1-hour goal of issue 20 can be judged before a run. Writes
results/benchmarks/teacher-throughput-<teacher>-b<batch>-<machine>.json. A script, not a test: only ratios within one
run on one machine mean much.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import timed  # noqa: E402

from titn_core import benchmark_records, hardware  # noqa: E402
from titn_core.complexity import count_flops, training_pflops  # noqa: E402
from titn_core.hardware import matmul_peak  # noqa: E402
from titn_core.plan_cost import epoch_train_images  # noqa: E402
from titn_core.profiles import build_config  # noqa: E402
from titn_core.teachers import build_teacher  # noqa: E402

CPU = torch.device("cpu")  # the teacher recipe this projects is the cpu profile's
VARIANTS = {  # name: (channels-last weights, bf16 autocast)
    "fp32 NCHW": (False, False),
    "fp32 channels-last": (True, False),
    "bf16 channels-last": (True, True),
}


class StepRunner:
    """One teacher in one variant, with its optimizer: `step()` is one training step on the fixed batch."""

    def __init__(self, teacher: str, classes: int, channels_last: bool, bf16: bool, x, y):
        torch.manual_seed(0)
        self.model = build_teacher(teacher, 3, classes)
        if not channels_last:
            self.model = self.model.to(memory_format=torch.contiguous_format)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.85, nesterov=True)
        self.bf16, self.x, self.y = bf16, x, y

    def step(self) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = F.cross_entropy(self.model(self.x), self.y, label_smoothing=0.2)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def measure(args) -> dict[str, float]:
    """images/s of a training step per variant (median of round-robin rounds)."""
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, args.classes, (args.batch_size,))
    runners = {name: StepRunner(args.teacher, args.classes, *v, x, y) for name, v in VARIANTS.items()}
    for runner in runners.values():
        runner.step()  # warm-up: oneDNN picks and caches its kernels
    seconds = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, runner in runners.items():
            seconds[name].append(timed(runner.step, CPU, args.steps))
    return {name: args.batch_size * args.steps / statistics.median(s) for name, s in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="fastcnn")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100"])
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=2, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = p.parse_args(argv)

    speeds = measure(args)
    peaks = {"fp32": matmul_peak(CPU, torch.float32), "bf16": matmul_peak(CPU, torch.bfloat16)}
    forward_flops = count_flops(build_teacher(args.teacher, 3, args.classes), (32, 3, args.classes))
    cfg = build_config(args.dataset, "cpu", "teacher", teacher=args.teacher)
    recipe_precision = "bf16 channels-last" if cfg.train.amp == "bf16" else "fp32 channels-last"
    recipe_images = cfg.train.epochs * epoch_train_images(cfg.data)  # as the run's metrics.json counts them
    machine = hardware.describe()
    print(f"{hardware.label(machine)}; {torch.get_num_threads()} threads; {args.teacher}, batch {args.batch_size}; "
          f"{forward_flops / 1e6:.1f} MFLOP/image forward")  # fmt: skip
    rows = {}
    for name, speed in speeds.items():
        peak = peaks["bf16" if "bf16" in name else "fp32"]
        rows[name] = {"train_images_per_s": speed, "peak_fraction": 3 * forward_flops * speed / peak}
        print(f"  {name:20s} {speed:8.1f} img/s  {100 * rows[name]['peak_fraction']:5.1f}% of matmul peak")
    ratios = {
        "channels_last_over_nchw_fp32": speeds["fp32 channels-last"] / speeds["fp32 NCHW"],
        "bf16_over_fp32_channels_last": speeds["bf16 channels-last"] / speeds["fp32 channels-last"],
    }
    projection = {
        "epochs": cfg.train.epochs,
        "precision": recipe_precision,
        "training_pflops": training_pflops(forward_flops, recipe_images),
        "projected_train_hours": recipe_images / speeds[recipe_precision] / 3600,
    }
    for key, value in {**ratios, **projection}.items():
        print(f"{key}: {value if isinstance(value, str) else round(value, 3)}")
    record = {
        "teacher": args.teacher, "dataset": args.dataset, "batch_size": args.batch_size, "steps": args.steps,
        "rounds": args.rounds, "forward_flops_per_image": forward_flops, "matmul_peak_flops": peaks,
        "variants": rows, "ratios": ratios, "recipe": projection, "machine": machine,
    }  # fmt: skip
    stem = f"teacher-throughput-{args.teacher}-b{args.batch_size}"
    out = benchmark_records.save(record, args.out, stem, Path(__file__).name, argv)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
