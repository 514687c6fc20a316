"""The benchmark scripts run end to end on a tiny input and write records the book can read (no timing asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from titn_core import hardware

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], check=True, capture_output=True)


def test_step_profile_sorts_operator_time_into_kinds(tmp_path):
    args = ["--amp", "--batch-size", "4", "--steps", "1", "--rounds", "1", "--only", "ours", "--out", str(tmp_path)]
    run_script("step_profile.py", *args)
    record = json.loads(hardware.record_path(tmp_path, "step-profile-cpu-titn-tiny-b4-bf16").read_text())
    assert set(record["models"]) == {"ours TITN", "ours ViT (no inner)"}
    for model in record["models"].values():
        kinds = model["ms_per_step"]
        assert kinds["matmul and convolution"] > 0 and kinds["layer norm"] > 0
        assert sum(kinds.values()) <= 1.5 * model["profiled_wall_ms_per_step"] * record["threads"]
        assert model["train_ms_per_step"] > 0, "the unprofiled step time, to compare the models within the record"


def test_step_profile_kinds_cover_the_operators_that_matter():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from step_profile import OTHER, kind_of

    assert kind_of("aten::bmm") == "matmul and convolution"
    assert kind_of("aten::copy_") == "casts and layout copies"
    assert kind_of("aten::gelu_backward") == "activation and softmax"
    assert kind_of("aten::add_") == OTHER
    assert kind_of("AddmmBackward0") is None, "autograd wrappers own no work; counting them would double it"


def test_teacher_throughput_records_every_variant_and_the_recipe_projection(tmp_path):
    args = ["--batch-size", "8", "--steps", "1", "--rounds", "1", "--out", str(tmp_path)]
    run_script("teacher_throughput.py", *args)
    record = json.loads(hardware.record_path(tmp_path, "teacher-throughput-fastcnn-b8").read_text())
    assert set(record["variants"]) == {"fp32 NCHW", "fp32 channels-last", "bf16 channels-last"}
    assert all(v["train_images_per_s"] > 0 for v in record["variants"].values())
    recipe = record["recipe"]
    assert recipe["epochs"] == 16 and recipe["projected_train_hours"] > 0
    # 3 x forward FLOPs x the images a run trains on (48,000 a CIFAR-10 epoch), as the teacher table counts them
    assert recipe["training_pflops"] == pytest.approx(3 * record["forward_flops_per_image"] * 16 * 48_000 / 1e15)
    assert 0.4 < recipe["training_pflops"] < 0.6, "airbench94's shape at 16 epochs: ~0.5 PFLOPs"
    assert record["machine"]["cores"] >= 1


def test_throughput_times_every_model_asked_for_and_records_its_machine(tmp_path):
    args = ["--batch-size", "4", "--steps", "1", "--rounds", "2", "--only", "ours", "--reference"]
    run_script("throughput.py", *args, "--out", str(tmp_path))
    record = json.loads(hardware.record_path(tmp_path, "throughput-cpu-titn-tiny-b4").read_text())
    assert set(record["models"]) == {"ours TITN", "ours ViT (no inner)", "ours TITN (reference)"}
    for row in record["models"].values():
        assert row["train_images_per_s"] > 0 and 0 < row["train_peak_fraction"] < 1 and not row["errors"]
    assert record["rounds"] == 2 and record["matmul_peak_precision"] == "fp32"
    assert record["environment"]["cpu"], "every record names its CPU"


def test_benchmark_records_are_named_by_machine_so_cpu_kinds_do_not_overwrite_each_other(monkeypatch):
    epyc = {"kind": "cpu", "name": "AMD EPYC 7B13 64-Core Processor", "cores": 2, "flags": ["avx2", "avx512_bf16"]}
    xeon = {"kind": "cpu", "name": "Intel(R) Xeon(R) Platinum 8480C @ 2.0GHz", "cores": 2, "flags": ["amx_bf16"]}
    paths = []
    for machine in (epyc, xeon):
        monkeypatch.setattr(hardware, "describe", lambda device="cpu", machine=machine: machine)
        paths.append(hardware.record_path("out", "throughput-cpu-titn-tiny-b128").name)
    assert paths == ["throughput-cpu-titn-tiny-b128-amd-epyc-7b13-64-core-avx512_bf16.json",
                     "throughput-cpu-titn-tiny-b128-intel-xeon-platinum-8480c-amx_bf16.json"]  # fmt: skip


def test_matmul_shapes_reads_every_linear_layer_of_a_block_at_its_training_shape(tmp_path):
    """The shapes come from the model (titn-tiny, CIFAR, batch 4): words are rows of the inner layers, tokens of the
    outer ones; the record holds each product's rate and the inner/outer summary the book glues."""
    run_script("matmul_shapes.py", "--amp", "--batch-size", "4", "--repeats", "1", "--out", str(tmp_path))
    record = json.loads(hardware.record_path(tmp_path, "matmul-shapes-cpu-titn-tiny-b4-bf16").read_text())
    layers = record["layers"]
    words, tokens = 4 * 64 * 4, 4 * (64 + 1)  # 64 patches of 4 words each, plus the class token
    assert (layers["inner.attn.qkv"]["rows"], layers["inner.attn.qkv"]["in"], layers["inner.attn.qkv"]["out"]) == (
        words, 32, 96)  # fmt: skip
    assert (layers["outer.mlp.0"]["rows"], layers["outer.mlp.0"]["in"], layers["outer.mlp.0"]["out"]) == (
        tokens,
        128,
        512,
    )
    assert (layers["words_to_patch"]["rows"], layers["words_to_patch"]["in"]) == (4 * 64, 128)
    assert len(layers) == 9 and all(row["weight grad GFLOP/s"] > 0 for row in layers.values())
    assert record["ratios"]["inner_over_outer_gflops"] > 0 and record["dtype"] == "bfloat16"


def test_matmul_rates_weigh_products_by_flops_and_count_the_words_projection_as_inner_work():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from matmul_shapes import level_rate

    from titn_core.benchmark_tables import MATMUL_PRODUCTS

    def layer(flops: float, ms: float) -> dict:  # every product of the layer took `ms`
        return {"flops": flops, **{f"{p} ms": ms for p in MATMUL_PRODUCTS}}

    rows = {"inner.attn.qkv": layer(1e9, 10.0), "words_to_patch": layer(3e9, 10.0), "outer.mlp.0": layer(4e9, 10.0)}
    # inner: 3 x 4e9 FLOPs in 60 ms; outer: 3 x 4e9 FLOPs in 30 ms
    assert level_rate(rows, inner=True) == pytest.approx(200.0) and level_rate(rows, inner=False) == pytest.approx(
        400.0
    )
