"""Benchmark records that remember their machine's earlier runs.

Why: a record is named by its machine kind (`hardware.record_path`), so a rerun on a host of the same kind replaces
it. Three runs of the bf16 throughput benchmark on AMX Xeon hosts, across code changes, put our TITN over timm's TNT
between 1.47x and 1.58x; the latest run alone hides that. Each record therefore carries a short summary of every run
it replaced (`earlier_runs`, newest first): its settings, speeds and ratios, the code's commit, the host's matmul
peak and when it ran. `comparable_runs` keeps those measured with the record's own settings.
"""

from __future__ import annotations

import datetime as dt
import sys
import warnings
from pathlib import Path

from . import hardware, storage
from .errors import TITNError

SETTINGS = ("preset", "input", "teacher", "amp_bf16", "compile", "dtype")  # what makes two runs comparable
SUMMARY_KEYS = (*SETTINGS, "recorded_at", "ratios", "matmul_peak_flops")


def summarise(record: dict) -> dict:
    """A run's comparable numbers: settings, every model's training images/s, the ratios, commit and time."""
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


def comparable_runs(record: dict) -> list[dict]:
    """`runs`, keeping those with the record's settings (a file copied in git history can carry another's)."""
    own = {key: record.get(key) for key in SETTINGS}
    return [run for run in runs(record) if {key: run.get(key) for key in SETTINGS} == own]


def write(path: str | Path, record: dict) -> Path:
    """Write `record` to `path`, keeping the replaced record (and its own earlier runs) as `earlier_runs`. An
    unreadable old record is replaced without its history, with a warning: the new measurement is never lost."""
    path = Path(path)
    record = {**record, "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if path.exists():
        try:
            record["earlier_runs"] = runs(storage.read_json(path))
        except (TITNError, OSError, ValueError) as err:
            warnings.warn(f"{path}: earlier runs not kept ({err}); writing the new record alone", stacklevel=2)
    storage.atomic_write_json(path, record)
    return path


def save(record: dict, out_dir: str | Path, stem: str, script: str, argv: list[str] | None, device="cpu") -> Path:
    """Write a benchmark script's record as `<out_dir>/<stem>-<machine>.json` (`hardware.record_path`), with the
    environment it ran in and the command that reproduces it (`script`: the script's file name; `argv`: its
    arguments, None for the command line's); returns the path."""
    args = argv if argv is not None else sys.argv[1:]
    record = {**record, "environment": storage.environment(),
              "command": " ".join(["python", f"benchmarks/{script}", *args])}  # fmt: skip
    return write(hardware.record_path(out_dir, stem, device), record)
