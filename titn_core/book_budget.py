"""The book's budget tables: what each run cost in hours at the reference machine's speed, and whether the
cpu profile's targets and the teacher's goal were met within their budgets (`paper.py` types the targets)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import results
from .book import DATASET_TITLES, STUDENT, mean_sd, results_dir, yes_no
from .complexity import training_pflops
from .paper import (
    CPU_HOURS_PER_RUN,
    CPU_TARGETS,
    PAPER,
    PUBLISHED_SHORT,
    PUBLISHED_SMALL_TRANSFORMERS,
    PUBLISHED_TRAIN_IMAGES,
    TEACHER_HOURS,
    TEACHER_TARGETS,
)
from .reference_machine import reference_speeds


def cpu_targets(runs: pd.DataFrame) -> pd.DataFrame:
    """The cpu profile's targets against what its distilled TITN reached, and whether each run kept to the budget."""
    rows = []
    for dataset, target in CPU_TARGETS.items():
        ours = runs[(runs["dataset"] == dataset) & (runs["role"] == STUDENT) & (runs["profile"] == "cpu")]
        hours, reached = ours["wall_seconds"].max() / 3600, ours["test_top1"].mean()
        budget = budget_hours(ours).max()
        within = yes_no(budget <= CPU_HOURS_PER_RUN, pd.isna(budget))
        rows.append({"dataset": DATASET_TITLES[dataset], "target top-1": target, "reached": mean_sd(ours["test_top1"]),
                     "reached minus target": round(reached - target, 2), "longest run (h)": round(hours, 2),
                     "at reference speed (h)": round(reference_hours(ours).max(), 2),
                     "median epoch x epochs, at reference speed (h)": round(
                         reference_hours(ours, typical_wall_seconds(ours)).max(), 2),
                     "target met": yes_no(reached >= target, ours.empty),
                     f"within {CPU_HOURS_PER_RUN:g} h": within})  # fmt: skip
    return pd.DataFrame(rows).astype(object).fillna("-")


def reference_speed() -> dict[str, float]:
    """precision -> the reference machine's matmul GFLOP/s (`reference_machine`; missing: not listed)."""
    return {precision: speed["gflops"] for precision, speed in reference_speeds(results_dir()).items()}


def reference_hours(rows: pd.DataFrame, wall_seconds: pd.Series | None = None) -> pd.Series:
    """Each run's wall hours (or the `wall_seconds` given per run) as the reference machine would take them: hours x
    its host's speed / the reference's, in the same precision, both as matmul GFLOP/s (`results._wall_weighted_speed`
    counts a probed TITN speed in them). Matmul speed tracked training speed across the EPYC hosts (fastcnn trained
    2.3x slower on a host whose bf16 matmuls were 2.2x slower) but not on an AMX Xeon, hence the probe. NaN for runs
    older than the measurement."""
    reference = rows["speed_precision"].map(reference_speed()).astype(float)
    seconds = rows["wall_seconds"] if wall_seconds is None else wall_seconds
    return seconds / 3600 * rows["speed_gflops"].astype(float) / reference


def typical_wall_seconds(rows: pd.DataFrame) -> pd.Series:
    """Each run's wall time had every epoch (training and evaluation) taken as long as its median one: what the run
    takes on a machine kept to itself. A long run resumed across sessions shares its cores now and then (a test
    run, a paused session), which its measured wall time counts in full. NaN where the run has no history."""

    def one(path) -> float:
        if not isinstance(path, str | Path) or not (Path(path) / "history.csv").exists():
            return float("nan")
        wall = results.history(path)["wall_seconds"].dropna()
        return float(results.epoch_wall_seconds(wall).median() * len(wall)) if not wall.empty else float("nan")

    paths = rows["path"] if "path" in rows else pd.Series(None, index=rows.index, dtype=object)
    return paths.map(one).astype(float)


def budget_hours(rows: pd.DataFrame) -> pd.Series:
    """The hours a run is judged by against a CPU budget: at the reference machine's speed where the run measured
    its host, as measured for CPU runs older than that measurement; NaN (not judged) for GPU runs, and where the
    reference record is missing."""
    unmeasured_cpu = (rows["device"] == "cpu") & rows["speed_gflops"].isna()
    return reference_hours(rows).where(~unmeasured_cpu, rows["wall_seconds"] / 3600)


def teacher_table(index: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Every complete teacher run of a dataset: accuracy (plain, and with test-time augmentation where scored),
    schedule, what its training cost and machine; and, where the dataset has a teacher goal, whether the run met it."""
    rows = index[(index["dataset"] == dataset) & (index["kind"] == "teacher")]
    table = [
        _teacher_row(r, at_reference, budget, TEACHER_TARGETS.get(dataset))
        for r, at_reference, budget in zip(rows.itertuples(), reference_hours(rows), budget_hours(rows), strict=True)
    ]
    return pd.DataFrame(table)


def _teacher_row(r, at_reference: float, budget: float, target: float | None) -> dict:
    """One teacher run's row. PFLOPs count its training images x epochs, slightly over the images seen (the last
    partial batch of an epoch is dropped). The goal is scored as airbench scores it, with test-time augmentation
    where the run has it, within the hours `budget_hours` judges it by."""
    tta = r.test_top1_tta if pd.notna(r.test_top1_tta) else None
    row = {"teacher": r.model, "profile": r.profile, "data": r.data_variant, "seed": int(r.seed),
           "epochs": int(r.epochs), "test top-1": r.test_top1, "with TTA": "-" if tta is None else tta,
           "training PFLOPs": round(training_pflops(r.flops, r.train_images * r.epochs), 2),
           "images/s": round(r.train_images_per_s),
           "wall h": round(r.wall_seconds / 3600, 2), "at reference speed (h)": round(at_reference, 2),
           "machine": r.machine}  # fmt: skip
    if target is not None:
        score = r.test_top1 if tta is None else tta
        row[f"{target:g} within {TEACHER_HOURS:g} h"] = yes_no(
            score >= target and budget <= TEACHER_HOURS, pd.isna(budget)
        )
    return row


def scale_table(runs: pd.DataFrame, profile: str = "cpu") -> pd.DataFrame:
    """Per CIFAR dataset: published small transformers trained from scratch (`paper.PUBLISHED_SMALL_TRANSFORMERS`),
    the paper's TITN, and this project's students of `profile` (mean over seeds), with each one's training compute:
    what the paper's numbers cost others, against what our budget spent. Student PFLOPs leave out the teacher."""
    rows = []
    for dataset in ("cifar10", "cifar100"):
        for ref in PUBLISHED_SMALL_TRANSFORMERS:
            pflops = training_pflops(2e9 * ref["gmacs"], PUBLISHED_TRAIN_IMAGES * ref["epochs"])
            rows.append(_scale_row(dataset, ref["model"], PUBLISHED_SHORT, ref["params_m"], ref["epochs"], pflops,
                                   ref[dataset]))  # fmt: skip
        rows.append(_scale_row(dataset, "TITN + KD", "the paper", None, None, None, PAPER[dataset]["top1"]))
        ours = runs[(runs["dataset"] == dataset) & (runs["profile"] == profile) & (runs["role"] != "teacher")]
        for role, group in ours.groupby("role", sort=False):
            pflops = training_pflops(group["flops"], group["train_images"] * group["epochs"]).mean()
            seeds = f"{len(group)} run" + ("s" if len(group) > 1 else "")
            rows.append(_scale_row(dataset, role, f"this book, {profile} profile ({seeds})",
                                   group["params"].mean() / 1e6, group["epochs"].max(), pflops,
                                   group["test_top1"].mean()))  # fmt: skip
    return pd.DataFrame(rows)


def _scale_row(dataset, model, source, params_m, epochs, pflops, top1) -> dict:
    """One row of `scale_table`; "-" where the source gives no number (the paper's compute)."""
    missing = "-"
    return {"dataset": DATASET_TITLES[dataset], "model": model, "source": source,
            "params (M)": missing if params_m is None else f"{params_m:.2f}",
            "epochs": missing if epochs is None else int(epochs),
            "training PFLOPs": missing if pflops is None else round(pflops, 1),
            "test top-1": round(top1, 2)}  # fmt: skip
