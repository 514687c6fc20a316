"""Benchmark records that remember their machine's earlier runs.

Why: a record is named by its machine (`hardware.record_path`), so a rerun on the same kind of CPU replaces it. On a
noisy shared host two runs an hour apart gave speed ratios 7% apart, so the latest run alone can hide how much a
figure moves; each record therefore carries a short summary of every run it replaced (`earlier_runs`, newest first):
the speeds and ratios, the code's commit, the matmul peak and when it ran.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from . import storage

SUMMARY_KEYS = ("recorded_at", "amp_bf16", "compile", "ratios", "matmul_peak_flops")


def summarise(record: dict) -> dict:
    """A run's comparable numbers: every model's training images/s, the record's ratios and settings, its commit."""
    out = {key: record[key] for key in SUMMARY_KEYS if key in record}
    out["git_commit"] = record.get("environment", {}).get("git_commit")
    if isinstance(record.get("models"), dict):
        out["models"] = {
            name: {"train_images_per_s": row["train_images_per_s"]}
            for name, row in record["models"].items()
            if isinstance(row, dict) and "train_images_per_s" in row
        }
    return out


def runs(record: dict) -> list[dict]:
    """This record's run and the runs it replaced, newest first, each as `summarise` gives it."""
    return [summarise(record), *record.get("earlier_runs", [])]


def write(path: str | Path, record: dict) -> Path:
    """Write `record` to `path`, keeping the replaced record (and its own earlier runs) as `earlier_runs`."""
    path = Path(path)
    record = {**record, "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if path.exists():
        record["earlier_runs"] = runs(storage.read_json(path))
    storage.atomic_write_json(path, record)
    return path
