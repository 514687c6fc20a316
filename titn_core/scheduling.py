"""The one loop behind every way of running a plan: start each job once what it needs is done, collect the ends.

A launcher decides where a job runs (this process, a worker process with its GPUs, a submitit job) and returns a
handle to poll. The loop keeps the plan's rules the same for all of them: complete jobs are skipped, a job waits
for the jobs it depends on (`jobgraph`), a job whose lock another runner holds is awaited rather than started, and
a job whose dependency failed is reported as not run. SLURM launchers may submit a job before its dependencies end
(`submits_ahead`): SLURM then holds it with `afterok` on their job ids.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from . import jobgraph, joblock


@dataclass
class Outcome:
    status: str  # ran | cached (finished by another runner) | busy (another runner holds it) | retry | failed
    error: str = ""
    notebook: str = ""


class Handle(Protocol):
    job_id: str | None  # the scheduler's id, for SLURM dependencies (None when there is none)

    def poll(self) -> Outcome | None: ...  # None while the job is still running

    def stop(self) -> None: ...  # the runner is interrupted (Ctrl-C): what to do with the job


class Launcher(Protocol):
    submits_ahead: bool
    poll_seconds: float

    def start(self, job, after: list[str], announce: Callable[[str], None]) -> Handle | None: ...  # None: no room


class Finished:
    """A job that ended before `start` returned (run in this process)."""

    job_id = None

    def __init__(self, outcome: Outcome):
        self.outcome = outcome

    def poll(self) -> Outcome:
        return self.outcome

    def stop(self) -> None:
        pass


class Elsewhere:
    """A job another runner holds: over when its lock is free; then complete, or ours to run (that runner died)."""

    job_id = None

    def __init__(self, job):
        self.job = job

    def poll(self) -> Outcome | None:
        if joblock.holder(self.job.lock_path) is not None:
            return None
        return Outcome("cached") if self.job.is_complete() else Outcome("retry")

    def stop(self) -> None:
        pass  # another runner's job: not ours to stop


class Scheduler:
    def __init__(self, jobs: list, launcher: Launcher):
        self.jobs, self.launcher = jobs, launcher
        self.deps = jobgraph.dependencies(jobs)
        self.waiting: list[int] = []
        self.active: dict[int, Handle] = {}
        self.done: set[int] = set()
        self.failed: set[int] = set()
        self.summary: dict = {"ran": 0, "cached": 0, "failed": []}

    def run(self) -> dict:
        """Execute every job not yet complete; returns counts and the failures (job, error, notebook path)."""
        for i, job in enumerate(self.jobs):
            if job.is_complete():
                self.done.add(i)
                self.summary["cached"] += 1
                self._say("cached  ", job, "")
            else:
                self.waiting.append(i)
        try:
            while self.waiting or self.active:
                self._start_ready()
                self._collect()
                if self.active:
                    time.sleep(self.launcher.poll_seconds)
        except KeyboardInterrupt:
            for handle in self.active.values():
                handle.stop()
            raise
        return self.summary

    def _start_ready(self) -> None:
        for i in list(self.waiting):
            job, pending = self.jobs[i], self.deps[i] - self.done
            if self.deps[i] & self.failed:
                self.waiting.remove(i)
                self._fail(i, Outcome("failed"))  # says which dependency failed
            elif (after := self._after(pending)) is None:
                continue
            elif (owner := joblock.holder(job.lock_path)) is not None:
                self.waiting.remove(i)
                self._await_elsewhere(i, owner)
            elif handle := self.launcher.start(job, after, lambda where, job=job: self._say("running ", job, where)):
                self.waiting.remove(i)
                self.active[i] = handle
                self._collect()  # a job run in this process has ended already: say so before starting the next

    def _after(self, pending: set[int]) -> list[str] | None:
        """The scheduler ids to start after, or None if the job must wait for its dependencies to end here."""
        if not pending:
            return []
        ids = [self.active[d].job_id if d in self.active else None for d in sorted(pending)]
        return ids if self.launcher.submits_ahead and all(ids) else None

    def _await_elsewhere(self, i: int, owner: dict) -> None:
        self.active[i] = Elsewhere(self.jobs[i])
        self._say("waiting ", self.jobs[i], f"another runner has it: {joblock.describe(owner)}")

    def _collect(self) -> None:
        for i, handle in list(self.active.items()):
            if (outcome := handle.poll()) is None:
                continue
            del self.active[i]
            if outcome.status == "busy":
                self._await_elsewhere(i, joblock.holder(self.jobs[i].lock_path) or {})
            elif outcome.status == "retry":  # its runner died before finishing it: ours now, from its checkpoint
                bisect.insort(self.waiting, i)
            elif outcome.status == "failed":
                self._fail(i, outcome)
            else:
                self._finish(i, outcome)

    def _finish(self, i: int, outcome: Outcome) -> None:
        self.done.add(i)
        self.summary["ran" if outcome.status == "ran" else "cached"] += 1
        self._say("done    ", self.jobs[i], "finished by another runner" if outcome.status == "cached" else "")

    def _fail(self, i: int, outcome: Outcome) -> None:
        job = self.jobs[i]
        if blocked := self.deps[i] & self.failed:  # e.g. SLURM cancelled it when its dependency failed
            outcome.error = f"not run: it needs {self.jobs[min(blocked)].label()}, which failed"
        self.failed.add(i)
        notebook = outcome.notebook or str(job.failed_path)
        self.summary["failed"].append({"job": job.label(), "error": outcome.error, "notebook": notebook})
        self._say("FAILED  ", job, outcome.error)

    def _say(self, verb: str, job, detail: str) -> None:
        print(f"{verb} {job.label()}{f': {detail}' if detail else ''}", flush=True)
