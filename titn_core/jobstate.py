"""What `experiments list` says of a job: done, running, queued, failed, interrupted or pending, and where.

Read from the files runners leave, so it works from any terminal: the job record (done), the job's lock (running,
and by whom), its submitit submission while the scheduler still has it (queued, with the SLURM id and state), a
failed notebook (failed), or a record that never completed (interrupted: the next run resumes it).
"""

from __future__ import annotations

from . import cluster, joblock

ENDED_BADLY = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def job_state(job) -> tuple[str, str]:
    """(state, detail), e.g. ("running", "pid 12 on node3, SLURM job 456, since ...")."""
    if job.is_complete():
        return "done", ""
    if (owner := joblock.holder(job.lock_path)) is not None:
        return "running", joblock.describe(owner)
    if (record := cluster.read_submission(job)) and (state := cluster.scheduler_state(record)):
        where = f"{record['executor']} job {record['job_id']}, {state}"
        if state in cluster.LIVE_STATES:  # submitted, not yet holding its lock
            return "queued", where
        if state in ENDED_BADLY:
            return "failed", where
    if job.failed_path.exists():
        return "failed", str(job.failed_path)
    if job.record_path.exists():
        return "interrupted", "the next run resumes it from its last checkpoint"
    return "pending", ""
