"""A lock per job, so two runners (two terminals, two array tasks, a requeued SLURM job) never run one job at once.

The lock is flock(2) on a file in `<checkpoint_dir>/.jobs/`. The kernel (on a cluster, the NFS or parallel file
system's lock manager) drops it when the holding process dies, however it dies, so a lock file left behind by a
killed runner is free at once: it is taken over, never waited on. The file also records who holds it (host, pid,
SLURM job), for `experiments list` and for the runner that finds the job taken.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path


def _owner() -> dict:
    slurm = os.environ.get("SLURM_JOB_ID")
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(UTC).isoformat(timespec="seconds"),
            **({"slurm_job": slurm} if slurm else {})}  # fmt: skip


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class JobLock:
    """Held by the process that runs the job (not by the runner that started it), for as long as it runs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; False at once if someone does."""
        fd = _open(self.path)
        if not _try_flock(fd, fcntl.LOCK_EX):
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_owner()).encode())
        self._fd = fd
        return True

    def wait(self, on_wait: Callable[[dict], None] | None = None, poll_seconds: float = 5.0) -> None:
        """Take the lock, waiting while a live process holds it (`on_wait` is told who, once)."""
        while not self.acquire():
            if on_wait is not None:
                on_wait(holder(self.path) or {})
                on_wait = None
            time.sleep(poll_seconds)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an empty file: nobody holds it
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> JobLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder(path: str | Path) -> dict | None:
    """Who holds the lock now ({} if they have not said yet), or None if it is free."""
    path = Path(path)
    if not path.exists():
        return None
    fd = _open(path)
    try:
        if _try_flock(fd, fcntl.LOCK_SH):  # free: a shared probe, so it never records itself as the owner
            return None
        try:
            return json.loads(path.read_text() or "{}")
        except json.JSONDecodeError:  # the holder is writing its record right now
            return {}
    finally:
        os.close(fd)


def describe(owner: dict) -> str:
    """'pid 123 on node7, SLURM job 456, since ...' for messages and `experiments list`."""
    where = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
    if owner.get("slurm_job"):
        where += f", SLURM job {owner['slurm_job']}"
    return where + (f", since {owner['since']}" if owner.get("since") else "")
