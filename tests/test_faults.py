"""Kills and torn files: a killed run resumes to the same numbers, a killed plan resumes, nothing torn is read."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from titn_core import results, storage
from titn_core.distill import DistillationLoss
from titn_core.errors import TITNError
from titn_core.experiments import load_plan, run_plan
from titn_core.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"epoch_train_seconds", "train_images_per_s", "wall_seconds", "host_gflops", "host_titn_images_per_s"}


def _train_cmd(data_dir: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "titn_core", "train", "--dataset", "mnist", "--profile", "smoke", "--no-progress",
        "--data-dir", data_dir, "--results-dir", str(out / "results"), "--checkpoint-dir", str(out / "ckpt"),
        "--set", "train.epochs=3", "--set", "data.train_subset=2048", *extra,
    ]  # fmt: skip


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"process ended (rc {proc.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)


def _run_dir(out: Path) -> Path:
    (run,) = (out / "results").iterdir()
    return run


def test_sigkill_mid_run_then_resume_gives_identical_metrics(tmp_path, data_dir):
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(data_dir, straight), check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(data_dir, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_name = _run_dir(straight).name  # same config, same run id
    _wait_for(killed / "ckpt" / run_name / "last.pt", proc)  # epoch 1 saved: epoch 2 is now under way
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "results" / run_name / "metrics.json").exists(), "killed before it could finish"

    subprocess.run(_train_cmd(data_dir, killed, "--resume"), check=True, capture_output=True)
    a = json.loads((_run_dir(straight) / "metrics.json").read_text())
    b = json.loads((_run_dir(killed) / "metrics.json").read_text())
    for key in ("test_top1", "test_top5", "val_top1", "best_epoch", "best_test_top1", "config_hash"):
        assert a[key] == b[key], key
    ha, hb = (pd.read_csv(_run_dir(d) / "history.csv") for d in (straight, killed))
    numbers = [c for c in ha.columns if c not in TIMING]
    pd.testing.assert_frame_equal(ha[numbers], hb[numbers], check_exact=True)


def test_killed_plan_reruns_finished_jobs_from_cache_and_resumes_the_interrupted_one(tmp_path, data_dir):
    where = {"results_dir": str(tmp_path / "r"), "checkpoint_dir": str(tmp_path / "c"), "data_dir": data_dir}
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "defaults: {dataset: mnist, profile: smoke}\n"
        "jobs:\n  - notebook: train_teacher.ipynb\n  - notebook: train_titn.ipynb\n    parameters: {epochs: 4}\n"
    )
    first, second = load_plan(plan, where)
    cmd = [sys.executable, "-m", "titn_core.experiments", "run", "--plan", str(plan)]
    cmd += [f"--{k.replace('_', '-')}={v}" for k, v in where.items()]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    student_ckpt = Path(where["checkpoint_dir"]) / second.out_dir.name / "last.pt"
    _wait_for(student_ckpt, proc, timeout=600)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its notebook kernel, as a crash would
    proc.wait()

    assert first.is_complete() and not second.is_complete()
    assert json.loads(second.record_path.read_text())["complete"] is False
    assert not (second.out_dir / "metrics.json").exists()
    assert second.out_dir.name not in set(results.load(where["results_dir"])["run_id"]), "partial run listed"
    before = pd.read_csv(second.out_dir / "history.csv")

    summary = run_plan(load_plan(plan, where))
    assert summary == {"ran": 1, "cached": 1, "failed": []}
    after = pd.read_csv(second.out_dir / "history.csv")
    assert list(after["epoch"]) == [1, 2, 3, 4]
    # epochs finished before the kill keep their recorded timings: the run resumed, it did not start over
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)


def test_truncated_results_file_is_reported_and_kept(smoke_config):
    cfg = smoke_config(overrides={"train.epochs": 1, "data.train_subset": 256})
    run = train(cfg)
    metrics = run.run_dir / "metrics.json"
    torn = metrics.read_bytes()[:40]
    metrics.write_bytes(torn)
    with pytest.raises(TITNError, match="truncated or corrupt"):
        train(cfg)
    with pytest.raises(TITNError, match="truncated or corrupt"):
        results.load(cfg.results_dir)
    assert metrics.read_bytes() == torn, "the damaged file is left for the user to inspect"


def test_results_dir_that_is_not_writable_fails_before_training(smoke_config, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = smoke_config(overrides={"train.epochs": 1})
    cfg.results_dir = str(blocker / "results")
    with pytest.raises(TITNError, match="cannot write to .*pass a writable --results-dir"):
        train(cfg)
    assert blocker.read_text() == "not a folder"
    if os.geteuid() != 0:  # root ignores permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cfg.results_dir = str(locked)
        with pytest.raises(TITNError, match="pass a writable --results-dir"):
            train(cfg)


def test_a_full_disk_is_one_line_and_the_previous_file_is_kept(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    storage.atomic_write_json(target, {"epoch": 1})

    def full_disk(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage.os, "fsync", full_disk)
    with pytest.raises(TITNError, match="could not write .*metrics.json \\(No space left on device\\); its previous"):
        storage.atomic_write_json(target, {"epoch": 2})
    assert json.loads(target.read_text()) == {"epoch": 1} and list(tmp_path.iterdir()) == [target], "no temp file left"


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(smoke_config, monkeypatch):
    cfg = smoke_config(overrides={"train.epochs": 2, "data.train_subset": 256})
    run = train(cfg, stop_after=1)
    good = (run.checkpoint_dir / "last.pt").read_bytes()
    monkeypatch.setattr(DistillationLoss, "forward", lambda self, out, y, t: (torch.tensor(float("nan")), {}))
    with pytest.raises(TITNError, match=r"loss became nan at epoch 2 .*last good checkpoint .*\(epoch 1\) is kept"):
        train(cfg, resume=True)
    assert (run.checkpoint_dir / "last.pt").read_bytes() == good
    assert not (run.run_dir / "metrics.json").exists()


def test_same_seed_same_machine_same_numbers(smoke_config, tmp_path):
    over = {"train.epochs": 1, "data.train_subset": 512}
    a = train(smoke_config(overrides=over))
    cfg = smoke_config(overrides=over)
    cfg.results_dir, cfg.checkpoint_dir = str(tmp_path / "again"), str(tmp_path / "again-ckpt")
    b = train(cfg)
    numbers = [c for c in a.history.columns if c not in TIMING]
    pd.testing.assert_frame_equal(a.history[numbers], b.history[numbers], check_exact=True)
    other = smoke_config(overrides={**over, "train.seed": 1})
    other.results_dir = str(tmp_path / "seed1")
    assert not train(other).history[numbers].equals(a.history[numbers]), "the seed must matter"


def test_no_epochs_global_stream_replays_a_data_stream():
    from titn_core.trainer import _epoch_seeds

    seeds = [_epoch_seeds(seed, epoch) for seed in range(4) for epoch in range(400)]
    global_seeds, data_seeds = ({s[i] for s in seeds} for i in (0, 1))
    assert len(global_seeds) == len(data_seeds) == len(seeds) and not global_seeds & data_seeds
    assert _epoch_seeds(0, 0)[1] == 1 and _epoch_seeds(1, 2)[1] == 1_000_006, "the committed runs' data seeds"


def test_moving_the_global_stream_moves_no_number_of_a_run_without_droppath_or_mixing(smoke_config, monkeypatch):
    """Why the committed runs kept their numbers when the global per-epoch seed moved off the data seeds."""
    from titn_core import trainer as trainer_module

    over = {"train.epochs": 1, "data.train_subset": 512}
    now = train(smoke_config(overrides=over))
    before = trainer_module._epoch_seeds
    monkeypatch.setattr(trainer_module, "_epoch_seeds", lambda s, e: (before(s, e)[1] - 1, before(s, e)[1]))
    cfg = smoke_config(overrides=over)
    cfg.run_id = "old-global-seed"
    old = train(cfg)
    numbers = [c for c in now.history.columns if c not in TIMING]
    pd.testing.assert_frame_equal(now.history[numbers], old.history[numbers], check_exact=True)
