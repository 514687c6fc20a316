"""Atomic writes of results and checkpoints, and careful reads that never mistake a torn file for a good one.

Every file is written to a temporary name in the same folder, flushed, fsynced and renamed over the target, so a
kill at any moment leaves either the old complete file or the new complete file.
"""

from __future__ import annotations

import io
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import hardware
from .errors import TITNError

CHECKPOINT_FORMAT = 1
WHERE_TO_WRITE = "choose a writable folder (--results-dir, --checkpoint-dir)"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise TITNError(f"cannot write to {path.parent} ({e.strerror}); {WHERE_TO_WRITE}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # e.g. a full disk: the previous file is untouched
            raise TITNError(f"could not write {path} ({e.strerror}); its previous version is kept; "
                            f"free space there or {WHERE_TO_WRITE}") from e  # fmt: skip
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise TITNError(f"{path} is truncated or corrupt ({e.msg}); delete it and rerun the command") from e


def atomic_write_npz(path: str | Path, **arrays) -> None:
    """Compressed .npz, written whole or not at all."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def set_aside(path: str | Path, label: str) -> Path:
    """Rename `name.ext` to `name.<label>.ext` (replacing an older one): kept for the record, never read as current."""
    path = Path(path)
    target = path.with_name(f"{path.stem}.{label}{path.suffix}")
    os.replace(path, target)
    return target


def save_checkpoint(path: str | Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`, or fail with one line saying what to do."""
    path = Path(path)
    if not path.is_file():
        raise TITNError(f"checkpoint {path} does not exist; check the path or train first")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for torn/garbage files
        raise TITNError(
            f"checkpoint {path} is corrupt or truncated ({type(e).__name__}); delete it and rerun without --resume"
        ) from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise TITNError(f"{path} is not a TITN checkpoint (format {CHECKPOINT_FORMAT}); pass a file this tool wrote")
    return state


def environment() -> dict:
    """Library versions and hardware, recorded next to every result."""
    import numpy
    import torchvision

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": hardware.describe("cpu"),  # model, cores, AVX2/AVX512/bf16/AMX: a speed is only read on its machine
        "cpu_speed": hardware.cpu_speed(),  # its matmul GFLOP/s: the same model name can be 2x slower on another host
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    """The checkout's commit (with '+dirty' when files differ), so a result names the code that made it."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "titn_core"], cwd=root, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def check_writable(folder: str | Path, option: str) -> None:
    """Create `folder` and prove a file can be written there, before any work that would be lost otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise TITNError(f"cannot write to {folder} ({e.strerror}); pass a writable {option}") from e
