"""What a plan costs before it runs: its jobs, the distinct runs they train, and an ESTIMATE of the GPU-hours.

The estimate is FLOPs divided by an assumed GPU rate; nothing here was measured on a GPU. Per run and epoch it
counts 3x the model's forward FLOPs (forward + backward) for every training image, the teacher's forward for every
image of a distilled run, and a forward pass over the validation and test images (the trainer scores both every
epoch); FLOPs are measured by `complexity.count_flops` (2 per multiply-add). The rate comes from DeiT's published
training time: DeiT-B (17.6 G multiply-adds = 35.2 GFLOPs per image) trains 300 ImageNet epochs (1.28 M images per
epoch) in 53 h on one node of 8 V100 GPUs (Touvron et al. 2021, arXiv 2012.12877, section 5, "Training time"), so
3 x 35.2e9 x 1.28e6 x 300 / (53 h x 8 GPUs) = 26.6 TFLOP/s per GPU. Our models on 28-32 px images keep a GPU less
busy than DeiT-B at 224 px, so read the result as a lower bound.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from .complexity import count_flops
from .config import DataConfig, RunConfig
from .jobgraph import needed_teacher_config
from .trainer import build_model

DEIT_B_FLOPS = 2 * 17.6e9  # per image, forward
GPU_FLOPS_PER_S = 3 * DEIT_B_FLOPS * 1.281167e6 * 300 / (53 * 3600 * 8)  # = 26.6e12, see the docstring
TRAIN_IMAGES = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000}
TEST_IMAGES = 10_000


def forward_flops(cfg: RunConfig) -> int:
    """Forward FLOPs per image. A student's blocks are all alike, so its FLOPs are linear in depth: counted at
    depths 1 and 2 and extrapolated, exactly, at a fraction of the cost of building the full model."""
    if cfg.kind == "teacher":
        return count_flops(build_model(cfg), cfg.image_shape)
    one, two = (count_flops(build_model(_with_depth(cfg, d)), cfg.image_shape) for d in (1, 2))
    return one + (cfg.model.depth - 1) * (two - one)


def _with_depth(cfg: RunConfig, depth: int) -> RunConfig:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, depth=depth))


def _cached_flops(cfg: RunConfig, cache: dict) -> int:
    key = (cfg.kind, cfg.data.dataset, repr(cfg.model) if cfg.kind == "student" else cfg.distill.teacher)
    if key not in cache:
        cache[key] = forward_flops(cfg)
    return cache[key]


def epoch_train_images(d: DataConfig) -> float:
    """Images one epoch trains on: the official training split less the validation hold-out (or the subset)."""
    kept = d.train_subset or (TRAIN_IMAGES[d.dataset] - d.val_size)
    return kept if d.repeat_subset else kept * d.train_fraction


def run_flops(cfg: RunConfig, cache: dict) -> float:
    """Training FLOPs of one run, every epoch included."""
    d = cfg.data
    train_images = epoch_train_images(d)
    scored = d.val_size + (d.test_subset or TEST_IMAGES)
    student = _cached_flops(cfg, cache)
    teacher_cfg = needed_teacher_config(cfg)
    teacher = _cached_flops(teacher_cfg, cache) if teacher_cfg is not None else 0
    return cfg.train.epochs * (train_images * (3 * student + teacher) + scored * student)


def estimate(jobs: list) -> pd.DataFrame:
    """One row per job: its notebook, the runs it trains that no earlier job does (a teacher its students need and
    no job trains counts for the first job that needs it: the trainer trains it there), their epochs and GPU-hours."""
    seen: set[str] = set()
    cache: dict = {}
    rows = []
    for job in jobs:
        configs = job.run_configs()
        new = []
        for cfg in [t for c in configs if (t := needed_teacher_config(c)) is not None] + configs:
            if (run_id := cfg.default_run_id()) not in seen:
                seen.add(run_id)
                new.append(cfg)
        flops = sum(run_flops(cfg, cache) for cfg in new)
        rows.append({
            "notebook": job.notebook, "job": job.label(), "new runs": len(new),
            "epochs": sum(cfg.train.epochs for cfg in new), "GPU-hours (estimate)": flops / GPU_FLOPS_PER_S / 3600,
        })  # fmt: skip
    return pd.DataFrame(rows)


def by_notebook(table: pd.DataFrame) -> pd.DataFrame:
    """An `estimate` table summed per notebook (what the README and the reproduce chapter show)."""
    return table.groupby("notebook", sort=False)[["new runs", "epochs", "GPU-hours (estimate)"]].sum().round(1)


def totals(table: pd.DataFrame) -> dict:
    """{jobs, runs, epochs, gpu_hours} of an `estimate` table (GPU-hours an estimate, see this module)."""
    return {"jobs": len(table), "runs": int(table["new runs"].sum()), "epochs": int(table["epochs"].sum()),
            "gpu_hours": float(table["GPU-hours (estimate)"].sum())}  # fmt: skip
