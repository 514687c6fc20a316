"""Which jobs of a plan wait for which, read from the runs each job trains and the teacher runs they need.

A distilled student needs its teacher run (`teacher_config`: same dataset and profile, seed 0); an attention
job reuses its student's run; an ablation's distilled variants need the teacher. A job waits for every earlier job
that trains a run it needs or trains too, so two jobs never train one run at once. A teacher run that no job of the
plan trains (its job left out by --where) is trained by the first job that needs it, and the others wait for that
one. Dependencies only point to earlier jobs, so a plan never deadlocks.
"""

from __future__ import annotations

from .config import RunConfig
from .teacher_runs import teacher_config


def needed_teacher_config(cfg: RunConfig) -> RunConfig | None:
    """The teacher run `cfg` distils from, if the trainer would load (or train) it."""
    d = cfg.distill
    if cfg.kind != "student" or d.teacher is None or d.teacher_checkpoint:
        return None
    return teacher_config(cfg)


def needed_teacher(cfg: RunConfig) -> str | None:
    """The run id of `needed_teacher_config`, if any."""
    teacher = needed_teacher_config(cfg)
    return teacher.default_run_id() if teacher is not None else None


def runs_of(job) -> tuple[set[str], set[str]]:
    """(run ids the job trains, teacher run ids it needs and does not train itself)."""
    configs = job.run_configs()
    trains = {cfg.default_run_id() for cfg in configs}
    needs = {t for cfg in configs if (t := needed_teacher(cfg))}
    return trains, needs - trains


def dependencies(jobs: list) -> list[set[int]]:
    """For each job, the indices of the earlier jobs it must wait for."""
    first: dict[str, int] = {}  # run id -> the first job that trains it
    deps = []
    for i, job in enumerate(jobs):
        trains, needs = runs_of(job)
        touched = trains | needs
        deps.append({first[run] for run in touched if run in first})
        for run in touched:
            first.setdefault(run, i)
    return deps
