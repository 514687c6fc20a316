"""Data-parallel training with DDP under torchrun (gloo, 2 CPU processes) matches one process on the same batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from titn_core import distributed
from titn_core.errors import TITNError


def _cmd(launcher: list[str], data_dir: str, out: Path) -> list[str]:
    return [
        *launcher, "-m", "titn_core", "train", "--dataset", "mnist", "--profile", "smoke", "--no-progress",
        "--teacher", "resnet-small", "--kd", "paper", "--data-dir", data_dir,
        "--results-dir", str(out / "results"), "--checkpoint-dir", str(out / "ckpt"),
        "--set", "train.epochs=2", "--set", "data.train_subset=1024",
    ]  # fmt: skip


def _metrics(out: Path, prefix: str) -> tuple[dict, pd.DataFrame]:
    (run,) = (out / "results").glob(f"{prefix}*")
    return json.loads((run / "metrics.json").read_text()), pd.read_csv(run / "history.csv")


def test_two_gloo_processes_match_one_process(tmp_path, data_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    single_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun gives each worker one thread too
    subprocess.run(_cmd([sys.executable], data_dir, one), check=True, capture_output=True, env=single_thread)
    (teacher,) = (one / "ckpt").glob("teacher-*/best.pt")  # one teacher for both, so only the student differs
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = [*_cmd(torchrun, data_dir, two), "--teacher-checkpoint", str(teacher)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]

    m1, h1 = _metrics(one, "student")
    m2, h2 = _metrics(two, "student")
    assert (m1["world_size"], m2["world_size"]) == (1, 2)
    assert m1["config_hash"] == m2["config_hash"] and m2["train_images"] == m1["train_images"]
    # same images, same global batches: only the order of float additions differs (gradient all-reduce)
    for column in ("train_loss", "train_kd", "train_feature"):
        assert h2[column].tolist() == pytest.approx(h1[column].tolist(), rel=1e-3), column
    assert abs(m2["test_top1"] - m1["test_top1"]) <= 0.5
    assert len(list((two / "ckpt").rglob("*.tmp"))) == 0


def test_context_alone_is_the_identity():
    ctx = distributed.Context()
    x = torch.arange(10)
    assert ctx.shard(x) is x and ctx.spread(x) is x and ctx.sum({"a": 1}) == {"a": 1}
    assert ctx.all_finite(torch.tensor(1.0)) and not ctx.all_finite(torch.tensor(float("inf")))


def test_shards_of_a_global_batch_cover_it_exactly_once():
    x = torch.arange(12)
    parts = [distributed.Context(rank, 3).shard(x) for rank in range(3)]
    assert torch.equal(torch.cat(parts), x)
    spread = [distributed.Context(rank, 4).spread(torch.arange(10)) for rank in range(4)]
    assert sorted(torch.cat(spread).tolist()) == list(range(10))


def test_batch_must_split_over_processes():
    with pytest.raises(TITNError, match="batch size 63 does not split over 2 processes"):
        distributed.check_batch(distributed.Context(0, 2), 63)
