"""`experiments run --executor slurm`: each job a SLURM job submitted through submitit, as DeiT and ConvNeXt do.

A job whose dependencies are still queued or running is submitted at once with `--dependency=afterok:<ids>` (and
`--kill-on-invalid-dep=yes`, so a failed teacher cancels its students instead of leaving them queued forever). On
the node the job takes its lock (waiting if another runner has it) and runs its notebook, which writes results and
the executed notebook where a local run would. Preempted or at its time limit, submitit calls `checkpoint`, the job
is requeued, and the rerun notebook resumes training from `last.pt`. `--executor local` is submitit's own local
executor: the same path on one machine (dependencies are then awaited here), which is what the tests run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import submitit

from . import storage
from .errors import TITNError
from .experiments import Job, error_line
from .resources import THREAD_VARIABLES, Pool
from .scheduling import Outcome
from .worker import run_locked

EXECUTORS = ("slurm", "local")
LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUE_HOLD", "RESIZING"}


@dataclass
class ClusterOptions:
    executor: str
    partition: str | None = None
    time_min: int = 1440
    gpus_per_job: int = 1  # for jobs whose plan entry does not say `gpus:`
    cpus_per_job: int | None = None
    mem_gb: int | None = None
    extra: dict[str, str] = field(default_factory=dict)  # any other sbatch option, e.g. account, qos, constraint
    setup: list[str] = field(default_factory=list)  # shell lines run before the job, e.g. `module load cuda`
    max_requeues: int = 20  # time-limit requeues per job before submitit gives up


class NotebookJob:
    """What submitit pickles and runs on the node: the job's notebook under its lock."""

    def __init__(self, notebook: str, parameters: dict, gpus: int | None, env: dict[str, str]):
        self.notebook, self.parameters, self.gpus, self.env = notebook, parameters, gpus, env

    def __call__(self) -> str:
        os.environ.update(self.env)
        if cpus := os.environ.get("SLURM_CPUS_PER_TASK"):  # threads for the cores SLURM gave, not the node's
            os.environ.update({name: cpus for name in THREAD_VARIABLES})
        job = Job(self.notebook, self.parameters, gpus=self.gpus)
        try:
            return run_locked(job, wait=True)
        except Exception as e:  # raised, so SLURM marks the job failed and cancels what depends on it
            raise TITNError(error_line(e)) from e

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Preempted or at the time limit: requeue this job; its notebook reruns and training resumes from last.pt."""
        return submitit.helpers.DelayedSubmission(self)


def slurm_parameters(options: ClusterOptions, job: Job, after: list[str]) -> dict:
    """SlurmExecutor parameters (sbatch options) for one job."""
    params = {
        "job_name": f"titn-{job.name}", "time": options.time_min, "partition": options.partition,
        "gpus_per_node": job.gpus or options.gpus_per_job, "ntasks_per_node": 1, "cpus_per_task": options.cpus_per_job,
        "mem": f"{options.mem_gb}GB" if options.mem_gb else None, "setup": options.setup or None,
        "dependency": f"afterok:{':'.join(after)}" if after else None,
        "additional_parameters": {"kill-on-invalid-dep": "yes", **options.extra},
    }  # fmt: skip
    return {k: v for k, v in params.items() if v is not None}


def make_executor(options: ClusterOptions, job: Job, after: list[str]) -> submitit.Executor:
    folder = job.state_dir / "submitit" / job.name  # submitit's pickles and the job's stdout/stderr logs
    if options.executor == "local":
        executor = submitit.LocalExecutor(folder, max_num_timeout=options.max_requeues)
        executor.update_parameters(timeout_min=options.time_min)
        return executor
    executor = submitit.SlurmExecutor(folder, max_num_timeout=options.max_requeues)
    executor.update_parameters(**slurm_parameters(options, job, after))
    return executor


def submission_path(job: Job):
    return job.state_dir / f"{job.name}.submitted.json"


def read_submission(job: Job) -> dict | None:
    path = submission_path(job)
    return storage.read_json(path) if path.exists() else None


def scheduler_state(record: dict) -> str | None:
    """SLURM's state of a submitted job (PENDING, RUNNING, FAILED, ...); for the local executor RUNNING while its
    controller process lives, else None (its end is read from the job's files)."""
    if record.get("executor") == "local":
        return "RUNNING" if _alive(int(record["job_id"])) else None
    info = submitit.SlurmJob(record["folder"], record["job_id"]).get_info(mode="force")  # one sacct call
    return (info.get("State") or "UNKNOWN").split()[0]  # "CANCELLED by 123" -> "CANCELLED"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


class SubmititLauncher:
    """Submits jobs through submitit; at most `limit` in flight (None: all the plan allows)."""

    def __init__(self, options: ClusterOptions, pool: Pool | None = None, limit: int | None = None):
        if options.executor == "slurm" and not shutil.which("sbatch"):
            raise TITNError("sbatch not found: run --executor slurm on the cluster's login node (or --jobs N here)")
        self.options, self.pool, self.limit, self.in_flight = options, pool, limit, 0
        self.submits_ahead = options.executor == "slurm"
        self.poll_seconds = 60.0 if self.submits_ahead else 1.0

    def start(self, job: Job, after: list[str], announce: Callable[[str], None]) -> SubmittedHandle | None:
        if self.limit is not None and self.in_flight >= self.limit:
            return None
        grant = self.pool.take(job.gpus or 1) if self.pool else None
        if self.pool and grant is None:
            return None
        submitted = self._adopt(job) or self._submit(job, after, grant.env if grant else {})
        self.in_flight += 1
        announce(f"{self.options.executor} job {submitted.job_id}" + (f", {grant.label}" if grant else ""))
        return SubmittedHandle(job, submitted, lambda: self._release(grant))

    def _submit(self, job: Job, after: list[str], env: dict[str, str]) -> submitit.Job:
        executor = make_executor(self.options, job, after)
        submitted = executor.submit(NotebookJob(job.notebook, job.parameters, job.gpus, env))
        record = {"executor": self.options.executor, "job_id": submitted.job_id, "folder": str(executor.folder),
                  "submitted": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
        storage.atomic_write_json(submission_path(job), record)
        return submitted

    def _adopt(self, job: Job) -> submitit.Job | None:
        """A SLURM job an earlier runner submitted for this job and that is still queued or running."""
        record = read_submission(job)
        ours = record and record.get("executor") == "slurm" == self.options.executor
        return (
            submitit.SlurmJob(record["folder"], record["job_id"])
            if ours and scheduler_state(record) in LIVE_STATES
            else None
        )

    def _release(self, grant) -> None:
        self.in_flight -= 1
        if grant is not None:
            self.pool.give_back(grant)


class SubmittedHandle:
    """A submitted job; a runner stopped with Ctrl-C leaves it queued or running (`experiments list` follows it)."""

    def __init__(self, job: Job, submitted: submitit.Job, release: Callable[[], None]):
        self.job, self.submitted, self.release = job, submitted, release
        self.job_id = submitted.job_id

    def poll(self) -> Outcome | None:
        if not self.submitted.done():
            return None
        self.release()
        try:
            return Outcome(self.submitted.result())  # "ran" or "cached"
        except Exception as e:  # noqa: BLE001 - the job's failure, reported like a local one
            log = self.job.failed_path if self.job.failed_path.exists() else self.submitted.paths.stderr
            return Outcome("failed", error_line(e), str(log))

    def stop(self) -> None:
        pass


def parse_extra(items: list[str]) -> dict[str, str]:
    """`--slurm account=abc --slurm qos=high` -> {"account": "abc", "qos": "high"} (sbatch long options)."""
    extra = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TITNError(f"--slurm {item!r} needs the form OPTION=VALUE, e.g. --slurm account=myproject")
        extra[key.strip().removeprefix("--")] = value.strip()
    return extra
