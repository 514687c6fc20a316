"""The results index: every complete run under results/ as one tidy pandas DataFrame (what the book reads)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import hardware, storage
from .reference_machine import reference_speeds

COLUMNS = [
    "run_id", "kind", "dataset", "data_variant", "model", "inner", "kd", "teacher", "profile", "seed", "epochs",
    "test_top1", "test_top5", "best_test_top1", "best_test_top5", "best_val_top1", "best_epoch", "params", "flops",
    "wall_seconds", "train_images_per_s", "device", "teacher_test_top1", "config_hash", "test_top1_tta", "train_images",
    "tta", "teacher_run_id",
]  # fmt: skip


def load(results_dir: str | Path = "results") -> pd.DataFrame:
    """One row per complete run (a metrics.json that says complete); partial runs are never listed."""
    rows, reference = [], reference_speeds(results_dir)
    for path in sorted(Path(results_dir).glob("*/metrics.json")):
        m = storage.read_json(path)
        if m.get("complete"):
            rows.append({c: m.get(c) for c in COLUMNS} | _host(m, path.parent, reference) | {"path": str(path.parent)})
    return pd.DataFrame(rows, columns=COLUMNS + ["machine", "speed_gflops", "speed_precision", "path"])


def _host(m: dict, run_dir: Path, reference: dict[str, dict]) -> dict:
    """The machine a run trained on (the last one, for a run resumed across hosts) and its speed in the run's
    precision as matmul GFLOP/s, wall-weighted over its hosts: the number `book_budget.reference_hours` converts its
    hours by. None for runs older than the measurement, on a GPU, or data-parallel on CPU (each rank measured a share
    of the cores at the same moment, so the speed is not the machine's)."""
    precision = hardware.cpu_precision_of(m.get("amp"))
    speed = None
    if m.get("device") == "cpu" and m.get("world_size", 1) == 1:
        recorded = hardware.speed_in(m.get("environment", {}).get("cpu_speed"), precision)
        speed = _wall_weighted_speed(run_dir, recorded, reference.get(precision, {}))
    return {"machine": hardware.machine_of(m), "speed_gflops": speed, "speed_precision": precision}


def _wall_weighted_speed(run_dir: Path, fallback_gflops: float | None, reference: dict) -> float | None:
    """A run resumed across sessions trains on several hosts: the mean of each epoch's host speed weighted by its
    wall time, so that hours x speed sums the work per host. An epoch that probed its host's TITN-tiny speed
    (`host_probe`) counts that, in the reference machine's GFLOP/s per TITN image/s (matmul speed alone misjudges
    AMX hosts); others count the host's matmul speed, and epochs recorded before that column `fallback_gflops`, the
    speed measured when the run last (re)started (an approximation for them)."""
    path = run_dir / "history.csv"
    hist = history(run_dir) if path.exists() else pd.DataFrame()
    if "host_gflops" not in hist or "wall_seconds" not in hist:
        return fallback_gflops
    speeds = hist["host_gflops"].fillna(fallback_gflops if fallback_gflops is not None else float("nan"))
    if "host_titn_images_per_s" in hist and reference.get("titn_images_per_s"):
        per_image = reference["gflops"] / reference["titn_images_per_s"]
        speeds = (hist["host_titn_images_per_s"] * per_image).fillna(speeds)
    walls = epoch_wall_seconds(hist["wall_seconds"])
    known = speeds.notna() & walls.notna()
    if not known.any():
        return None
    if speeds[known].nunique() == 1:  # one host: its measured number, exactly
        return float(speeds[known].iloc[0])
    return float((speeds[known] * walls[known]).sum() / walls[known].sum())


def history(run_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "history.csv")


def epoch_wall_seconds(cumulative: pd.Series) -> pd.Series:
    """Each epoch's own wall time, from history.csv's running total (the first epoch's is its total)."""
    walls = cumulative.diff()
    if not walls.empty:
        walls.iloc[0] = cumulative.iloc[0]
    return walls
