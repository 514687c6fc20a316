"""One job, run under its lock: in this process (sequential runs, SLURM jobs) or as a process of its own.

    python -m titn_core.worker NOTEBOOK PARAMETERS_JSON [--gpus N]

`experiments run --jobs N` starts one such process per job, with that job's GPUs or share of the cores in its
environment, which the notebook's kernel inherits. The lock is held by the process doing the work, not by the
runner that started it: a runner killed while its workers go on does not free their jobs, and a killed worker
frees its job at once (its kernel notices its parent is gone and exits too).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import traceback
from collections.abc import Callable

import torch

from .errors import TITNError
from .experiments import Job, error_line, run_job
from .joblock import JobLock, describe
from .trainer import train

EXIT_CODES = {"ran": 0, "failed": 1, "busy": 75, "cached": 76}  # busy: another runner holds the job


def run_locked(job: Job, wait: bool = False, on_start: Callable[[], None] | None = None) -> str:
    """'ran', 'cached' (complete by the time the lock was ours) or 'busy' (held elsewhere and not `wait`); raises
    if the notebook fails. `on_start` is called once the job is ours to run."""
    lock = JobLock(job.lock_path)
    if wait:
        lock.wait(on_wait=lambda owner: print(f"waiting for {job.label()}: held by {describe(owner)}", flush=True))
    elif not lock.acquire():
        return "busy"
    with lock:
        if job.is_complete():
            return "cached"
        if on_start is not None:
            on_start()
        execute(job)
    return "ran"


def explain(e: Exception) -> str:
    """The failure's one line; its traceback too (on stderr) if it is a bug, not bad input or a failed notebook."""
    if not isinstance(e, TITNError) and "PapermillExecutionError" not in type(e).__name__:
        traceback.print_exc()
    return error_line(e)


def execute(job: Job) -> None:
    """Run the job's notebook. Given several GPUs, first train its runs under torchrun (DDP); the notebook then
    finds them complete and only reports them."""
    gpus = torch.cuda.device_count()
    if (job.gpus or 1) > 1 and gpus > 1:
        _train_with_ddp(job, gpus)
    run_job(job)


def _train_with_ddp(job: Job, nproc: int) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "titn_core.worker", job.notebook, json.dumps(job.parameters), "--train-runs"]  # fmt: skip
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise TITNError(f"DDP training of {job.label()} failed (torchrun exit {done.returncode}); see its log above")


def train_runs(job: Job) -> None:
    """Under torchrun: each of the job's runs as one data-parallel process (rank 0 writes the results)."""
    for cfg in job.run_configs():
        train(cfg, resume=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m titn_core.worker", description=__doc__.split("\n")[0])
    parser.add_argument("notebook")
    parser.add_argument("parameters", help="the job's notebook parameters as JSON")
    parser.add_argument("--gpus", type=int, help="GPUs the plan gives this job (DDP when more than one)")
    parser.add_argument("--train-runs", action="store_true", help=argparse.SUPPRESS)  # one torchrun process
    args = parser.parse_args(argv)
    job = Job(args.notebook, json.loads(args.parameters), gpus=args.gpus)
    if args.train_runs:
        train_runs(job)
        return 0
    try:
        return EXIT_CODES[run_locked(job)]
    except Exception as e:  # noqa: BLE001 - reported to the runner as one line (a bug's traceback stays in this log)
        print(f"error: {explain(e)}", file=sys.stderr, flush=True)
        return EXIT_CODES["failed"]


if __name__ == "__main__":
    sys.exit(main())
