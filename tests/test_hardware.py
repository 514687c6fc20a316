"""Precision chosen by the machine, and the machine named in every record."""

import warnings
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from titn_core import hardware, host_probe, reference_machine, results, storage
from titn_core.profiles import build_config
from titn_core.trainer import HOST_SPEED_MIN_EPOCH_SECONDS, autocast_factory, compiler_ready, train, update_host_speed


@pytest.fixture(autouse=True)
def kernels_not_held(monkeypatch):
    """These tests describe a CPU whose kernels may use all it has, whatever the environment running them sets."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has exactly these flags (and is not Apple silicon)."""

    def pretend(*flags):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(hardware.platform, "system", lambda: "Linux")

    return pretend


def test_cpu_profile_trains_bf16_only_where_it_is_native(cpu_with):
    cpu_with("avx2", "avx512f", "avx512_bf16")
    native = build_config("cifar10", "cpu")
    cpu_with("avx2")
    emulated = build_config("cifar10", "cpu")
    assert native.train.amp == "bf16" and emulated.train.amp == "off"
    assert native.hash() != emulated.hash(), "runs on the two kinds of CPU never share a config hash"
    cpu_with("amx_bf16", "amx_tile")
    assert build_config("mnist", "cpu").train.amp == "bf16"


def test_onednn_held_below_bf16_counts_as_emulated_bf16(cpu_with, monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes an AMX CPU compute bf16 matmuls by emulation: the cpu profile must see that,
    and the machine's records must not pass for the uncapped CPU's."""
    cpu_with("avx2", "avx512f", "amx_bf16")
    uncapped = hardware.describe("cpu")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    capped = hardware.describe("cpu")
    assert capped["native_bf16"] is False and build_config("cifar10", "cpu").train.amp == "off"
    assert capped["onednn_max_isa"] == "AVX2" and "onednn_max_isa" not in uncapped
    assert hardware.label(capped).endswith("amx_bf16 held to AVX2") and hardware.slug().endswith(
        "amx_bf16-held-to-avx2"
    )
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # a cap that keeps bf16 native
    assert hardware.native_bf16() and build_config("cifar10", "cpu").train.amp == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert hardware.describe("cpu") == uncapped
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", " ")  # empty: the older name, if set, counts
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "avx512_core")
    assert not hardware.native_bf16() and hardware.onednn_isa_cap() == "AVX512_CORE"
    monkeypatch.delenv("DNNL_MAX_CPU_ISA")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # ATen held alone: bf16 matmuls stay native, the name says it
    held = hardware.describe("cpu")
    assert held["native_bf16"] and hardware.label(held).endswith("amx_bf16 held to AVX2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert hardware.label(hardware.describe("cpu")).endswith("amx_bf16 held to AVX2"), "one cap named once"


def test_asking_for_bf16_on_a_cpu_that_emulates_it_warns_with_the_fix(cpu_with):
    cpu_with("avx2")
    with pytest.warns(UserWarning, match="emulated on this CPU.*--set train.amp=off"):
        autocast_factory(torch.device("cpu"), "bf16")
    cpu_with("avx512_bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native bf16: any warning fails the test
        autocast_factory(torch.device("cpu"), "bf16")


def test_compile_without_a_cpp_compiler_trains_eagerly_names_the_fix_and_records_it(monkeypatch, smoke_config):
    """`make reproduce` asks for --compile; a CPU machine without g++/clang++ still trains, only slower, and its
    config.json says it trained eagerly."""
    monkeypatch.setattr(hardware, "cpu_compiler", lambda: None)
    cfg = smoke_config(overrides={"train.epochs": 1, "data.train_subset": 256, "data.test_subset": 100})
    cfg.compile = True
    with pytest.warns(UserWarning, match=r"no C\+\+ compiler.*install g\+\+ or clang\+\+, or point CXX"):
        run = train(cfg)
    assert storage.read_json(run.run_dir / "config.json")["compile"] is False
    assert run.metrics["test_top1"] >= 0, "trained to the end"
    monkeypatch.setattr(hardware, "cpu_compiler", lambda: "g++")
    assert compiler_ready(torch.device("cpu")) and compiler_ready(torch.device("cuda"))


def test_machine_record_names_model_cores_and_capability(cpu_with):
    cpu_with("avx2", "avx512f", "avx512_bf16", "sse4_2")
    record = hardware.describe("cpu")
    assert record["kind"] == "cpu" and record["cores"] >= 1 and record["name"]
    assert record["flags"] == ["avx2", "avx512_bf16", "avx512f"] and record["native_bf16"] is True
    assert hardware.label(record).endswith(f"{record['cores']} cores, avx512_bf16")
    assert hardware.label({"kind": "cpu", "name": "old", "cores": 2, "flags": ["avx2"]}) == "old, 2 cores, avx2"
    # a run's metrics and a benchmark record name their machine the same way, older ones saying what is missing
    assert hardware.machine_of({"device": "cpu", "environment": {"cpu": record}}) == hardware.label(record)
    assert hardware.machine_of({"device": "cpu", "environment": {"cpu_count": 2}}) == "2-core CPU (model not recorded)"
    assert hardware.machine_of({"device": "NVIDIA A100", "environment": {"cpu": record}}) == "NVIDIA A100"


def test_every_run_records_its_hosts_matmul_speed_in_the_precision_the_cpu_profile_uses(cpu_with, smoke_config):
    """Two hosts of one CPU model can differ 2x; the speed recorded with a run is what converts its hours."""
    cpu_with("avx2")
    assert list(hardware.cpu_speed()) == ["fp32"], "no bf16 speed where bf16 is emulated"
    cfg = smoke_config(overrides={"train.epochs": 1, "data.train_subset": 256, "data.test_subset": 100})
    train(cfg)
    row = results.load(cfg.results_dir).iloc[0]
    assert row["speed_precision"] == "fp32" and row["speed_gflops"] > 0, "the speed in the precision it trained in"
    assert results.history(row["path"])["host_gflops"].iloc[0] == row["speed_gflops"], "one host: its number"


def test_measuring_the_hosts_speed_leaves_the_seeded_random_stream_alone():
    """A run records its host's speed when it starts or resumes: a draw from the global generator would make a
    resumed run differ from an uninterrupted one."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    hardware.matmul_peak("cpu", torch.float32, n=64, repeats=1)
    assert torch.equal(torch.rand(3), expected)


def test_a_run_resumed_on_a_slower_host_is_converted_by_each_hosts_share_of_its_wall_time(tmp_path):
    """Long runs span sessions and hosts: one epoch of 100 s at 400 GFLOP/s and two of 50 s at 200 GFLOP/s did
    the work of 200 s at 300 GFLOP/s, whichever host finished the run."""
    run_dir = tmp_path / "student-run"
    run_dir.mkdir()
    history = {"epoch": [1, 2, 3], "wall_seconds": [100.0, 150.0, 200.0], "host_gflops": [400.0, 200.0, 200.0]}
    pd.DataFrame(history).to_csv(run_dir / "history.csv", index=False)
    metrics = {"complete": True, "device": "cpu", "amp": "bf16", "wall_seconds": 200.0,
               "environment": {"cpu_speed": {"fp32": 100.0, "bf16": 200.0}}}  # fmt: skip
    storage.atomic_write_json(run_dir / "metrics.json", metrics)
    row = results.load(tmp_path).iloc[0]
    assert row["speed_gflops"] == pytest.approx(300.0) and row["speed_precision"] == "bf16"
    history["host_gflops"] = [None, None, 400.0]  # epochs from before the column: the speed measured at (re)start
    pd.DataFrame(history).to_csv(run_dir / "history.csv", index=False)
    assert results.load(tmp_path).iloc[0]["speed_gflops"] == pytest.approx((200 * 100 + 200 * 50 + 400 * 50) / 200)
    (run_dir / "history.csv").write_text("epoch,wall_seconds\n1,200.0\n")  # recorded before the per-epoch column
    assert results.load(tmp_path).iloc[0]["speed_gflops"] == 200.0
    storage.atomic_write_json(run_dir / "metrics.json", metrics | {"world_size": 2})
    assert pd.isna(results.load(tmp_path).iloc[0]["speed_gflops"]), "ranks measured a share of the cores each"


def test_a_host_speed_measured_on_a_busy_machine_is_raised_by_the_next_quiet_measurement(monkeypatch):
    """Other work only slows a measurement: a run that (re)started while the cores were busy would otherwise stamp
    every later epoch with too slow a host, understating its hours at reference speed."""
    measured = iter([390.0, 350.0, 500.0])
    monkeypatch.setattr(hardware, "cpu_speed_in", lambda precision: next(measured) if precision == "bf16" else 0.0)
    probed = iter([180.0, 150.0, 200.0])
    monkeypatch.setattr(host_probe, "titn_train_speed", lambda precision: next(probed))
    run = SimpleNamespace(host_gflops=207.0, host_titn_images_per_s=None,
                          cfg=SimpleNamespace(train=SimpleNamespace(amp="bf16")))  # fmt: skip
    update_host_speed(run, epoch_seconds=HOST_SPEED_MIN_EPOCH_SECONDS - 1)
    assert run.host_gflops == 207.0, "a short epoch (tests, smoke runs) does not pay for a measurement"
    update_host_speed(run, epoch_seconds=240.0)
    assert run.host_gflops == 390.0, "the quiet measurement replaces the busy one"
    assert run.host_titn_images_per_s == 180.0, "and the host's TITN speed is probed beside it"
    update_host_speed(run, epoch_seconds=240.0)
    assert run.host_gflops == 390.0 and run.host_titn_images_per_s == 180.0, "a later busy measurement lowers neither"
    run.host_gflops = None  # the host's speed is unknown in this precision (bf16 emulated, GPU): nothing measured
    update_host_speed(run, epoch_seconds=240.0)
    assert run.host_gflops is None and next(measured) == 500.0, "and nothing was measured"
    assert next(probed) == 200.0, "nor probed"


def test_the_host_probe_measures_a_training_speed_without_touching_the_global_rng():
    """Called between a run's epochs: it must not shift the run's random stream (resume-exactness)."""
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    speed = host_probe.titn_train_speed("fp32", steps=1)
    assert torch.equal(torch.rand(4), expected)
    assert speed > 0


def test_epochs_that_probed_their_host_count_its_titn_speed_not_its_matmul_speed(tmp_path):
    """An AMX host had twice the reference's bf16 matmul speed and half its TITN speed: its probed epochs count as
    half the reference's speed, in the reference's GFLOP/s per TITN image/s; an unprobed epoch keeps its matmul."""
    reference = {"matmul_peak_flops": 800e9, "models": {"ours TITN": {"train_images_per_s": 400.0}}}
    (tmp_path / "benchmarks").mkdir()
    storage.atomic_write_json(tmp_path / "benchmarks" / reference_machine.REFERENCE_RECORDS["bf16"], reference)
    run_dir = tmp_path / "student-run"
    run_dir.mkdir()
    history = {"epoch": [1, 2, 3], "wall_seconds": [100.0, 200.0, 300.0], "host_gflops": [400.0, 1600.0, 1600.0],
               "host_titn_images_per_s": [None, 200.0, 200.0]}  # fmt: skip
    pd.DataFrame(history).to_csv(run_dir / "history.csv", index=False)
    metrics = {"complete": True, "device": "cpu", "amp": "bf16", "wall_seconds": 300.0,
               "environment": {"cpu_speed": {"bf16": 1600.0}}}  # fmt: skip
    storage.atomic_write_json(run_dir / "metrics.json", metrics)
    assert results.load(tmp_path).iloc[0]["speed_gflops"] == pytest.approx((400 * 100 + 400 * 200) / 300)
