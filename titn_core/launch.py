"""How a plan runs, from the command line: one job at a time here, `--jobs N` at once, or `--executor slurm`.

The options of `experiments run` that choose it, their checks (a bad value stops with one line naming the fix),
and the launcher they give the scheduler.
"""

from __future__ import annotations

import argparse

from .cluster import EXECUTORS, ClusterOptions, SubmititLauncher, parse_extra
from .errors import TITNError
from .localrun import ProcessLauncher
from .resources import Pool

SLURM_ONLY = {"partition": "--partition", "slurm": "--slurm", "setup": "--setup", "cpus_per_job": "--cpus-per-job",
              "mem_gb": "--mem-gb"}  # fmt: skip


def add_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="run up to N jobs at once, each in its own process: one GPU each (or its plan entry's "
        "gpus:), or on a CPU-only machine an equal share of the cores (default: one at a time, here)",
    )
    run.add_argument("--executor", metavar="NAME",
                     help=f"{' or '.join(EXECUTORS)}: submit each job through submitit, to SLURM (run this on the "
                     "login node) or to submitit's local executor (one machine; what the tests use)")  # fmt: skip
    slurm = run.add_argument_group("with --executor slurm")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--time", type=int, default=1440, metavar="MINUTES",
                       help="time limit per job (default 1440); a job at its limit is requeued and resumes from its "
                       "last checkpoint")  # fmt: skip
    slurm.add_argument(
        "--gpus-per-job",
        type=int,
        default=1,
        metavar="N",
        help="GPUs for a job whose plan entry has no gpus: (default 1)",
    )
    slurm.add_argument("--cpus-per-job", type=int, metavar="N", help="CPU cores per job (--cpus-per-task)")
    slurm.add_argument("--mem-gb", type=int, metavar="GB", help="memory per job")
    slurm.add_argument(
        "--slurm",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="any other sbatch option, e.g. --slurm account=myproject --slurm qos=high (repeatable)",
    )
    slurm.add_argument(
        "--setup",
        action="append",
        default=[],
        metavar="COMMAND",
        help="a shell line run before each job, e.g. --setup 'source .venv/bin/activate' (repeatable)",
    )


def check(args: argparse.Namespace) -> None:
    """Stop a bad option here, before any job starts, with one line naming the fix."""
    if args.jobs is not None and args.jobs < 1:
        raise TITNError(f"--jobs must be 1 or more (got {args.jobs}); leave it out to run one job at a time here")
    if args.executor is not None and args.executor not in EXECUTORS:
        raise TITNError(f"unknown executor {args.executor!r}; use --executor slurm (a cluster) or local, "
                        "or --jobs N without --executor (one machine)")  # fmt: skip
    for name, flag in (("time", "--time"), ("gpus_per_job", "--gpus-per-job")):
        if getattr(args, name) < 1:
            raise TITNError(f"{flag} must be 1 or more (got {getattr(args, name)})")
    given = [flag for name, flag in SLURM_ONLY.items() if getattr(args, name)]
    if given and args.executor != "slurm":
        raise TITNError(f"{given[0]} only applies to SLURM jobs; add --executor slurm or drop it")


def launcher_from(args: argparse.Namespace, jobs: list):
    """The launcher the options ask for; None: one job at a time in this process."""
    check(args)
    if args.executor:
        options = ClusterOptions(args.executor, args.partition, args.time, args.gpus_per_job, args.cpus_per_job,
                                 args.mem_gb, parse_extra(args.slurm), args.setup)  # fmt: skip
        if args.executor == "slurm":
            return SubmititLauncher(options, limit=args.jobs)
        return SubmititLauncher(options, pool=_pool(args.jobs or 1, jobs))
    return ProcessLauncher(_pool(args.jobs, jobs)) if args.jobs else None


def _pool(size: int, jobs: list) -> Pool:
    pool = Pool(size)
    for job in jobs:
        pool.check(job.gpus or 1, job.label())
    print(f"plan runner: {pool}", flush=True)
    return pool
