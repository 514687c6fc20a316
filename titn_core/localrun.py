"""Launchers for one machine: each job in this process, one after another, or up to N worker processes at once.

Workers (`python -m titn_core.worker`) get their GPUs or thread share from a `resources.Pool` and write their
output to `<checkpoint_dir>/.jobs/<job>.log`; the runner prints one line per job start and end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from .experiments import Job
from .resources import Grant, Pool
from .scheduling import Finished, Outcome
from .worker import EXIT_CODES, explain, run_locked

STATUS_OF_EXIT = {code: status for status, code in EXIT_CODES.items()}


class InProcessLauncher:
    """Sequential: each job runs in this process when started (what `run` does without --jobs)."""

    submits_ahead = False
    poll_seconds = 2.0

    def start(self, job: Job, after: list[str], announce: Callable[[str], None]) -> Finished:
        try:
            return Finished(Outcome(run_locked(job, on_start=lambda: announce(""))))
        except Exception as e:  # noqa: BLE001 - a failed job must not stop the plan
            return Finished(Outcome("failed", explain(e), str(job.failed_path)))


class ProcessLauncher:
    """`--jobs N`: a worker process per job, at most N at once, each with its share of the machine."""

    submits_ahead = False
    poll_seconds = 0.5

    def __init__(self, pool: Pool):
        self.pool = pool

    def start(self, job: Job, after: list[str], announce: Callable[[str], None]) -> WorkerHandle | None:
        grant = self.pool.take(job.gpus or 1)
        if grant is None:
            return None
        announce(grant.label)
        return WorkerHandle(job, grant, self.pool)


class WorkerHandle:
    """A worker process running one job, with the share of the machine it was granted."""

    job_id = None

    def __init__(self, job: Job, grant: Grant, pool: Pool):
        self.job, self.grant, self.pool = job, grant, pool
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        with job.log_path.open("a") as log:
            log.write(f"=== {datetime.now(UTC).isoformat(timespec='seconds')} {job.label()} ({grant.label})\n")
            cmd = [sys.executable, "-m", "titn_core.worker", job.notebook, json.dumps(job.parameters)]
            cmd += ["--gpus", str(job.gpus or 1)]
            # its own process group, so what it starts (torchrun's DDP processes) can be stopped with it (see poll)
            self.proc = subprocess.Popen(cmd, env={**os.environ, **grant.env}, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip

    def poll(self) -> Outcome | None:
        code = self.proc.poll()
        if code is None:
            return None
        self.pool.give_back(self.grant)
        with contextlib.suppress(ProcessLookupError):  # a killed worker's torchrun processes; its kernel, in a
            os.killpg(self.proc.pid, signal.SIGKILL)  # session of its own, exits by itself once its parent is gone
        if code in STATUS_OF_EXIT and code != EXIT_CODES["failed"]:
            return Outcome(STATUS_OF_EXIT[code])
        return Outcome("failed", self._error(code), self._notebook())

    def stop(self) -> None:
        """Ctrl-C: interrupt the worker's notebook (its run resumes from its checkpoint next time) and wait for it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait()

    def _error(self, code: int) -> str:
        if code < 0:
            name = signal.Signals(-code).name
            return f"worker killed by {name}; the next run resumes the job from its last checkpoint"
        lines = [line for line in self.job.log_path.read_text().splitlines() if line.startswith("error: ")]
        if lines:  # the worker's own one-line report
            return lines[-1].removeprefix("error: ")
        return f"worker exited with code {code}; see {self.job.log_path}"

    def _notebook(self) -> str:
        return str(self.job.failed_path if self.job.failed_path.exists() else self.job.log_path)
