"""What machine a run is on, and whether its CPU computes bf16 natively.

Why it matters: bf16 autocast doubles training speed on CPUs with native bf16 (avx512_bf16 or AMX, as on this
project's usual machine) and makes it about twelve times *slower* where bf16 is emulated (AVX2-only CPUs). So the
cpu profile picks its precision from this module, and every result and benchmark record names the machine.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import time
from pathlib import Path

import torch

# CPU flags that say which vector units exist, in /proc/cpuinfo's spelling (x86) and the ARM spelling
CAPABILITY_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "bf16", "sve")
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
# oneDNN, which runs torch's CPU matmuls and convolutions, can be held below the CPU's ISA (ONEDNN_MAX_CPU_ISA, or
# the older DNNL_MAX_CPU_ISA): below AVX512_CORE_BF16 its bf16 matmuls are emulated, even on an AMX CPU (1 thread,
# 512^2 bf16 matmul on the AMX Xeon: ~350 GFLOP/s uncapped, 1.6 capped at AVX2). That is also how this project
# measures what an AVX2-only machine does without one: ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2.
ONEDNN_ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not readable, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _env_cap(*names: str, unheld: str) -> str | None:
    """The first of these environment variables that is set, upper case; None if unset, empty or `unheld`."""
    cap = next((os.environ[n].strip().upper() for n in names if os.environ.get(n, "").strip()), None)
    return cap if cap != unheld else None


def onednn_isa_cap() -> str | None:
    """The ISA oneDNN is held to by the environment (upper case), None when it may use all the CPU has."""
    return _env_cap("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", unheld="ALL")


def isa_caps() -> dict[str, str]:
    """What the environment holds this CPU's kernels to: oneDNN's ISA (matmuls, convolutions) and ATen's and
    inductor's vector level (ATEN_CPU_CAPABILITY); empty when neither is set."""
    caps = {"onednn_max_isa": onednn_isa_cap(), "aten_cpu_capability": _env_cap("ATEN_CPU_CAPABILITY", unheld="")}
    return {name: cap for name, cap in caps.items() if cap}


def native_bf16() -> bool:
    """True where the CPU has bf16 arithmetic in hardware (avx512_bf16, AMX or ARM bf16; Apple silicon counts too)
    and oneDNN is not held below it (see ONEDNN_ISAS_WITHOUT_BF16)."""
    hardware = bool(cpu_flags() & NATIVE_BF16_FLAGS) or (
        platform.system() == "Darwin" and platform.machine() == "arm64"
    )
    return hardware and onednn_isa_cap() not in ONEDNN_ISAS_WITHOUT_BF16


def cpu_precision() -> str:
    """The cpu profile's train.amp on this machine: bf16 only where it is native, else fp32 ("off")."""
    return "bf16" if native_bf16() else "off"


def cpu_compiler() -> str | None:
    """The C++ compiler torch.compile would build CPU kernels with, None where it finds none (compiling would fail at
    the first step): `--compile` then trains eagerly instead, with a warning (`trainer.compiler_ready`)."""
    from torch._inductor import cpp_builder, exc

    try:
        return cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        return None


def matmul_peak(device: torch.device | str, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Best FLOP/s of an n x n matmul: the yardstick for "fraction of peak", and the one number that tells two hosts
    of the same CPU model apart (two "AMD EPYC" sessions of this project differed 2.2x in bf16)."""
    device = torch.device(device)
    own = torch.Generator(device).manual_seed(0)  # never draws from the global generator a training run seeded
    a, b = (torch.randn(n, n, device=device, dtype=dtype, generator=own) for _ in range(2))
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a timer around it measures the work (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_speed() -> dict:
    """This CPU's matmul GFLOP/s per precision it computes natively, so hours measured here convert to another
    machine's (`book_budget.reference_hours`): hosts differ by another factor in fp32 than in bf16. ~0.5 s, best
    of 3."""
    precisions = ["fp32"] + (["bf16"] if native_bf16() else [])
    return {name: cpu_speed_in(name) for name in precisions}


def cpu_speed_in(precision: str) -> float:
    """This CPU's matmul GFLOP/s in one precision ("fp32" or "bf16"), measured as `cpu_speed` does (~0.2 s)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return round(matmul_peak("cpu", dtype, repeats=3) / 1e9, 1)


def cpu_precision_of(amp: str | None) -> str:
    """The precision a CPU run computes in, from its `train.amp` ("auto" means bf16 on CUDA only)."""
    return "bf16" if amp == "bf16" else "fp32"


def speed_in(speeds: dict | None, precision: str) -> float | None:
    """From a `cpu_speed()` record, the matmul GFLOP/s in one precision (None where it was not measured)."""
    return (speeds or {}).get(precision)


def describe(device: torch.device | str = "cpu") -> dict:
    """The machine as a record: CPU model, cores, capability flags and torch's kernel level, or the GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"kind": "gpu", "name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gb": round(props.total_memory / 2**30, 1), "count": torch.cuda.device_count()}  # fmt: skip
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "kind": "cpu",
        "name": cpu_model(),
        "cores": cores,
        "flags": sorted(cpu_flags() & set(CAPABILITY_FLAGS)),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(),
        **isa_caps(),
    }


def label(record: dict) -> str:
    """One line naming a machine record, for tables: 'AMD EPYC, 2 cores, avx512_bf16' or the GPU's name."""
    if record.get("kind") == "gpu":
        return f"{record['name']} (x{record.get('count', 1)})"
    return f"{record.get('name', '?')}, {record.get('cores', '?')} cores, {best_vector_unit(record)}"


def best_vector_unit(record: dict) -> str:
    """The strongest vector unit a CPU record's flags name: what most decides its bf16 and fp32 speed; with the
    environment holding the kernels below it (`isa_caps`), the caps too ('amx_bf16 held to AVX2'), so such a record
    never passes for the CPU's own."""
    flags = record.get("flags", [])
    best = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), "no AVX2")
    caps = dict.fromkeys(record[k] for k in ("onednn_max_isa", "aten_cpu_capability") if record.get(k))
    return f"{best} held to {'/'.join(caps)}" if caps else best


def slug(device: torch.device | str = "cpu") -> str:
    """This machine in a file name, e.g. 'amd-epyc-avx512_bf16' or 'nvidia-a100-sxm4-40gb': benchmark records carry
    it so that a session on another CPU kind adds its own records instead of overwriting another machine's."""
    record = describe(device)
    best = best_vector_unit(record).replace(" ", "-").lower() if record["kind"] == "cpu" else ""
    words = re.split(r"[^a-z0-9]+", record["name"].split("@")[0].lower())
    return "-".join(w for w in [*words, best] if w and w not in {"r", "tm", "processor", "cpu"})


def record_path(out_dir: str | Path, stem: str, device: torch.device | str = "cpu") -> Path:
    """Where a benchmark writes its record: `<out_dir>/<stem>-<machine slug>.json`."""
    return Path(out_dir) / f"{stem}-{slug(device)}.json"


def machine_of(record: dict) -> str:
    """The machine a run's metrics or a benchmark record was measured on, as one line: its device when that is a
    GPU, else the CPU its environment names (older records name only the core count, and say so)."""
    env = record.get("environment", {})
    if str(record.get("device", "cpu")) != "cpu":
        return str(record["device"])
    return label(env["cpu"]) if "cpu" in env else f"{env.get('cpu_count', '?')}-core CPU (model not recorded)"
