"""How one machine is shared by the jobs of a plan that run at once: whole GPUs per job, else a share of the cores.

A job sees only its GPUs (`CUDA_VISIBLE_DEVICES`); a job that asks for several (`gpus: 4` in the plan) gets them
together. On a machine without GPUs, N jobs at once get `cores // N` threads each (`OMP_NUM_THREADS`), so they
split the cores instead of each starting one thread per core and fighting over them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .errors import TITNError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def visible_gpus() -> list[str]:
    """This machine's GPUs as CUDA_VISIBLE_DEVICES names them (ids or UUIDs), respecting an existing setting."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()] if torch.cuda.is_available() else []
    return [str(i) for i in range(torch.cuda.device_count())]


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass
class Grant:
    """What one running job was given: its environment and a label for the runner's messages."""

    env: dict[str, str]
    gpus: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"GPU {','.join(self.gpus)}" if self.gpus else _count(int(self.env["OMP_NUM_THREADS"]), "CPU thread")


class Pool:
    """Up to `jobs` grants at once, each of whole GPUs (when there are any) or of an equal share of the cores."""

    def __init__(self, jobs: int, gpus: list[str] | None = None, cores: int | None = None):
        self.gpus = visible_gpus() if gpus is None else gpus
        cores = cores or available_cores()
        self.slots = jobs if self.gpus else min(jobs, cores)
        self.threads = max(1, cores // self.slots)
        self.free = list(self.gpus)
        self.running = 0

    def __str__(self) -> str:
        where = _count(len(self.gpus), "GPU") if self.gpus else _count(self.slots * self.threads, "CPU core")
        return f"up to {_count(self.slots, 'job')} at once on {where}, {_count(self.threads, 'CPU thread')} each"

    def check(self, wanted: int, label: str) -> None:
        if self.gpus and wanted > len(self.gpus):
            raise TITNError(
                f"{label} asks for {wanted} GPUs but this machine has {len(self.gpus)}; lower its `gpus:` in the "
                "plan, or run the plan on a cluster with --executor slurm"
            )

    def take(self, wanted: int = 1) -> Grant | None:
        """A grant for a job wanting `wanted` GPUs (ignored without GPUs), or None until enough are free."""
        if self.running >= self.slots or (self.gpus and len(self.free) < wanted):
            return None
        env = {name: str(self.threads) for name in THREAD_VARIABLES}
        gpus = []
        if self.gpus:
            gpus, self.free = self.free[:wanted], self.free[wanted:]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        self.running += 1
        return Grant(env, gpus)

    def give_back(self, grant: Grant) -> None:
        self.running -= 1
        self.free = [g for g in self.gpus if g in self.free or g in grant.gpus]  # keep the machine's order
