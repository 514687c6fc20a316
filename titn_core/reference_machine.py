"""The reference machine: the host whose speed the budgets (3 h a student run) are set for, known from its benchmark
records (2-core EPYC, avx512_bf16; the records predate naming the CPU). A run on another host converts its hours by
the ratio of the two hosts' speeds in the run's precision: the ratio of TITN-tiny training speeds where the run
probed its host (`host_probe`), else the ratio of matmul speeds."""

from __future__ import annotations

from pathlib import Path

from . import storage

REFERENCE_RECORDS = {"bf16": "throughput-cpu-titn-tiny-b128-bf16.json", "fp32": "throughput-cpu-titn-tiny-b128.json"}
PROBED_MODEL = "ours TITN"  # the row of those records that `host_probe.titn_train_speed` measures again


def reference_speeds(results_dir: str | Path) -> dict[str, dict[str, float]]:
    """precision -> {"gflops": matmul GFLOP/s, "titn_images_per_s": TITN-tiny eager training speed} of the reference
    machine, read from its records under `results_dir`/benchmarks (a missing record: its precision is not listed)."""
    speeds = {}
    for precision, name in REFERENCE_RECORDS.items():
        path = Path(results_dir) / "benchmarks" / name
        if path.exists():
            record = storage.read_json(path)
            titn = record.get("models", {}).get(PROBED_MODEL, {}).get("train_images_per_s")
            speeds[precision] = {"gflops": record["matmul_peak_flops"] / 1e9, "titn_images_per_s": titn}
    return speeds
